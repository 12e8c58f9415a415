"""Regenerates README.md's table of CPU results from the latest recorded run.

    python benchmarks/readme_table.py [--results benchmarks/results] [--readme README.md]

Reads every JSON that `cnnops bench --json` wrote into benchmarks/results/, takes the latest
(by the date it records) CPU run that is neither a --tiny smoke test nor a --channels-last
run (the table is of the default NCHW layout) nor a run of some families only (--ops: the
table covers every family the fullest run has), and rewrites the part of README.md between
the two marker comments. Never edit that part by hand.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN = "<!-- bench-table:begin (written by benchmarks/readme_table.py; do not edit) -->"
END = "<!-- bench-table:end -->"


def latest_cpu_run(results_dir: str) -> tuple[str, dict] | None:
    runs = []
    for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
        with open(path) as f:
            data = json.load(f)
        settings = data.get("settings", {})
        if (settings.get("device") == "cpu" and not settings.get("tiny") and data.get("rows")
                and settings.get("memory_format", "contiguous") == "contiguous"):
            runs.append((data["machine"]["date"], path, data))
    if not runs:
        return None
    families = [set(data["settings"].get("families", ())) for _, _, data in runs]
    fullest = max(families, key=len)
    complete = [run for run, have in zip(runs, families) if have >= fullest]
    _, path, data = max(complete)
    return path, data


def _format(field: str, value: float | None) -> str:
    if value is None:
        return "-"
    if field.endswith("_ms"):
        return f"{value:.3f}" if value < 10 else f"{value:.2f}" if value < 100 else f"{value:.1f}"
    if field == "speedup":
        return f"{value:.2f}x"
    if field == "peak_fraction":
        return f"{100 * value:.1f}%"
    return f"{value:.1f}"


def _cells(passes: dict, field: str) -> str:
    """'forward / forward+backward' values of one field."""
    return " / ".join(_format(field, passes[p][field]) if p in passes else "-"
                      for p in ("forward", "forward+backward"))


def render(path: str, data: dict) -> str:
    m, s, peaks = data["machine"], data["settings"], data["peaks"]
    fma = peaks["fma_gflops"][s["dtype"]] if s["dtype"] in peaks["fma_gflops"] else None
    lines = [
        f"Recorded {m['date'][:10]} by `cnnops bench{' --quick' if s.get('quick') else ''}` "
        f"([{os.path.basename(path)}](benchmarks/results/{os.path.basename(path)})): "
        f"{m['cpu_model']}, {s['threads']} threads, ISA {m['cpu_isa']}, torch {m['torch']}, "
        f"cnnops {m['cnnops']}, {s['dtype']}. Measured peaks: "
        + (f"{fma:.0f} GFLOP/s FMA, " if fma else "") + f"{peaks['copy_gbs']:.1f} GB/s copy.",
        "",
        "Each cell is forward / forward+backward (for `e2e.*`: inference / training step; "
        "`fused.*` is inference through `cnnops.fuse`).",
        "",
        "| op | shape | cnnops ms | torch ms | speedup | rate | of peak |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    by_op: dict[tuple, dict] = {}
    for row in data["rows"]:
        by_op.setdefault((row["op"], row.get("torch_tf32")), {})[row["pass"]] = row
    for (op, tf32), passes in by_op.items():
        first = next(iter(passes.values()))
        name = f"`{op}`" + (" (torch TF32)" if tf32 else "")
        lines.append(f"| {name} | {first['shape']} | {_cells(passes, 'cnnops_ms')} | "
                     f"{_cells(passes, 'torch_ms')} | {_cells(passes, 'speedup')} | "
                     f"{_cells(passes, 'rate')} {first['rate_unit']} | "
                     f"{_cells(passes, 'peak_fraction')} |")
    lines += ["", "Geomean speedup per op family:", "",
              "| family | pass | rows | geomean speedup |", "| --- | --- | ---: | ---: |"]
    for g in data.get("geomean", []):
        family = g["family"] + (" (torch TF32)" if g.get("torch_tf32") else "")
        lines.append(f"| {family} | {g['pass']} | {g['rows']} | {g['geomean_speedup']:.2f}x |")
    return "\n".join(lines)


def update(readme_text: str, table: str) -> str:
    start, end = readme_text.find(BEGIN), readme_text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"README has no '{BEGIN}' ... '{END}' markers")
    return readme_text[:start + len(BEGIN)] + "\n" + table + "\n" + readme_text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=os.path.join(ROOT, "benchmarks", "results"))
    parser.add_argument("--readme", default=os.path.join(ROOT, "README.md"))
    args = parser.parse_args(argv)
    found = latest_cpu_run(args.results)
    if found is None:
        table = ("No CPU results are recorded yet. Record some on a quiet machine with\n"
                 "`cnnops bench --json benchmarks/results/$(date +%F)-cpu-<machine>.json`, then run\n"
                 "`python benchmarks/readme_table.py`.")
    else:
        table = render(*found)
    with open(args.readme) as f:
        text = f.read()
    with open(args.readme, "w") as f:
        f.write(update(text, table))
    print(f"{args.readme}: table from {found[0] if found else 'no recorded results'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
