"""The output of `cnnops bench` (bench.py): the terminal table (rich when installed, plain
text otherwise), the progress bar, JSON, CSV and the plot (matplotlib, optional)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import sys

from .bench_cases import PASSES

# Every row of --json and --csv has these fields.
ROW_FIELDS = ("op", "shape", "device", "dtype", "pass", "cnnops_ms", "torch_ms", "speedup",
              "rate", "rate_unit", "peak_fraction", "peak", "torch_rate", "torch_tf32")


@dataclasses.dataclass
class Results:
    machine: dict
    peaks: dict
    settings: dict
    rows: list[dict] = dataclasses.field(default_factory=list)
    refused: list[dict] = dataclasses.field(default_factory=list)
    skipped: list[dict] = dataclasses.field(default_factory=list)

    def geomeans(self) -> list[dict]:
        """Geomean speedup per family and pass (torch with TF32 apart)."""
        groups: dict[tuple, list[float]] = {}
        for row in self.rows:
            key = (row["op"].split(".")[0], row["pass"], bool(row["torch_tf32"]))
            groups.setdefault(key, []).append(row["speedup"])
        return [{"family": family, "pass": pass_, "torch_tf32": tf32, "rows": len(values),
                 "geomean_speedup": math.exp(sum(map(math.log, values)) / len(values))}
                for (family, pass_, tf32), values in groups.items()]

    def to_json(self) -> dict:
        return {"machine": self.machine, "peaks": self.peaks, "settings": self.settings,
                "rows": self.rows, "geomean": self.geomeans(), "refused": self.refused,
                "skipped": self.skipped}


def _console():
    """A rich console; one that is not a terminal (a log file) gets room for the whole table."""
    from rich.console import Console

    console = Console(soft_wrap=True)
    return console if console.is_terminal else Console(soft_wrap=True, width=200)


class Reporter:
    """A rich progress bar and table when rich is installed; plain lines otherwise."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        try:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn)
        except ImportError:
            self.console = None
            return
        self.console = _console()
        self.progress = Progress(TextColumn("{task.description:<34}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=self.console,
                                 transient=True, disable=not self.console.is_terminal)
        self.task = self.progress.add_task("", total=total)

    def __enter__(self) -> Reporter:
        if self.console is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.console is not None:
            self.progress.stop()

    def starting(self, op: str) -> None:
        self.done += 1
        if self.console is not None and self.console.is_terminal:
            self.progress.update(self.task, description=op)
        else:  # a log file: one line per case instead of a bar
            print(f"[{self.done}/{self.total}] {op}", file=sys.stderr, flush=True)

    def advance(self) -> None:
        if self.console is not None:
            self.progress.advance(self.task)

    def say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, markup=False, highlight=False)
        else:
            print(text, flush=True)


def _threads_and_layout(settings: dict) -> str:
    layout = ", channels_last" if settings.get("memory_format") == "channels_last" else ""
    return f"{settings['threads']} thread" + ("" if settings["threads"] == 1 else "s") + layout


def _fmt_ms(ms: float) -> str:
    return f"{ms:.3f}" if ms < 10 else f"{ms:.2f}" if ms < 100 else f"{ms:.1f}"


def _fmt_peak(peaks: dict) -> str:
    parts = [f"{name} {value:.0f} GFLOP/s" for name, value in peaks.get("fma_gflops", {}).items()]
    parts += [f"{name} tensor {value:.0f} GFLOP/s" for name, value in peaks.get("tensor_gflops", {}).items()]
    parts.append(f"copy {peaks['copy_gbs']:.1f} GB/s")
    return ", ".join(parts)


def print_header(results: Results, reporter: Reporter) -> None:
    m, s = results.machine, results.settings
    where = m.get("device_name") or f"{m['cpu_model']} ({m['cpu_isa']})"
    reporter.say(f"cnnops {m['cnnops']} vs torch {m['torch']} on {where}: {s['device']}, "
                 f"{s['dtype']}, {_threads_and_layout(s)}")
    reporter.say(f"peaks: {_fmt_peak(results.peaks)}")
    if "allocator" in s:  # (results recorded before it was a setting lack it)
        reporter.say(f"allocator: {s['allocator']}")
    for skip in results.skipped:
        reporter.say(f"skipped {skip['family']}: {skip['reason']}")


def table_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    header = ["op", "shape", "pass", "cnnops ms", "torch ms", "speedup", "rate", "of peak"]
    body = []
    for row in results.rows:
        op = row["op"] + (" [torch tf32]" if row["torch_tf32"] else "")
        fraction = row["peak_fraction"]
        body.append([op, row["shape"], "fwd" if row["pass"] == "forward" else "fwd+bwd",
                     _fmt_ms(row["cnnops_ms"]), _fmt_ms(row["torch_ms"]),
                     f"{row['speedup']:.2f}x", f"{row['rate']:.1f} {row['rate_unit']}",
                     "-" if fraction is None else f"{100 * fraction:.1f}%"])
    return header, body


def print_results(results: Results) -> None:
    header, body = table_rows(results)
    geomeans = results.geomeans()
    title = (f"cnnops vs torch: {results.settings['device']}, {results.settings['dtype']}, "
             f"{_threads_and_layout(results.settings)} (speedup = torch_ms / cnnops_ms)")
    geo_header = ["family", "pass", "rows", "geomean speedup"]
    geo_body = [[g["family"] + (" [torch tf32]" if g["torch_tf32"] else ""), g["pass"],
                 str(g["rows"]), f"{g['geomean_speedup']:.2f}x"] for g in geomeans]
    try:
        from rich.table import Table
    except ImportError:
        print(title)
        _print_plain(header, body, right_from=3)
        print()
        _print_plain(geo_header, geo_body, right_from=2)
    else:
        console = _console()
        for heading, cols, rows, right_from in ((title, header, body, 3),
                                                ("geomean speedup per op family", geo_header, geo_body, 2)):
            table = Table(title=heading, title_justify="left")
            for i, col in enumerate(cols):
                table.add_column(col, justify="right" if i >= right_from else "left",
                                 no_wrap=i != 1)
            for r in rows:
                table.add_row(*r)
            console.print(table)
    for refused in results.refused:
        print(f"REFUSED {refused['op']}: {refused['reason']}")


def _print_plain(header: list[str], body: list[list[str]], right_from: int) -> None:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    for r in [header, *body]:
        print("  ".join(c.rjust(w) if i >= right_from else c.ljust(w)
                        for i, (c, w) in enumerate(zip(r, widths))).rstrip())


def write_json(results: Results, path: str) -> None:
    with open(path, "w") as f:
        json.dump(results.to_json(), f, indent=1)
        f.write("\n")


def write_csv(results: Results, path: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROW_FIELDS)
        writer.writeheader()
        writer.writerows(results.rows)


def write_plot(results: Results, path: str) -> bool:
    """A PNG bar chart of speedups by layer; False (and a message) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print(f"--plot {path}: skipped, matplotlib is not installed (pip install matplotlib)")
        return False
    rows = [r for r in results.rows if not r["torch_tf32"]]
    ops = list(dict.fromkeys(r["op"] for r in rows))
    speedup = {(r["op"], r["pass"]): r["speedup"] for r in rows}
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.32 * len(ops)))
    height = 0.4
    values = [v for v in speedup.values() if v > 0]
    low, high = min(values + [0.5]), max(values + [2.0])
    for k, pass_ in enumerate(PASSES):
        ys = [i + (k - 0.5) * height for i in range(len(ops))]
        # Bars grow from 1 (parity): right when cnnops is faster, left when slower.
        xs = [speedup.get((op, pass_), 1.0) for op in ops]
        ax.barh(ys, [x - 1 for x in xs], height, left=1, label=pass_)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlim(low / 1.3, high * 1.3)
    ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
             if low / 1.3 <= t <= high * 1.3]
    ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_yticks(range(len(ops)), ops, fontsize=8)
    ax.set_ylim(len(ops) - 0.5, -0.5)
    ax.set_xlabel("speedup = torch_ms / cnnops_ms (log scale; > 1: cnnops faster)")
    m, s = results.machine, results.settings
    ax.set_title(f"cnnops vs torch {m['torch']}: {m.get('device_name') or m['cpu_model']}, "
                 f"{s['dtype']}, {_threads_and_layout(s)}", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True

