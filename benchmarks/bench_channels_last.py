"""channels_last against contiguous (NCHW) inputs, timed side by side in one process.

    python benchmarks/bench_channels_last.py [--ops conv2d,pointwise,...] [--threads 2]
                                             [--quick] [--min-run-time 0.25] [--json PATH]

Issue 8 asks each op family to run on channels_last inputs within 1.2x of its NCHW time.
Two `cnnops bench` runs (one with --channels-last) measure the two layouts minutes apart;
on a shared, noisy machine their ratio then carries the drift between the runs (+-30% per
row on the 2-core Zen 3 VM). Here each case's four runners (cnnops NCHW, cnnops
channels_last, torch NCHW, torch channels_last) take turns in the same timing loop
(cnnops.bench.time_interleaved), so the drift hits all four alike. Prints per row the
cnnops and torch channels_last / NCHW time ratios (above 1: channels_last is slower), then
their geomean per family and pass. The cases, inputs and checks are `cnnops bench`'s.
"""

from __future__ import annotations

import argparse
import json
import math

import torch

from cnnops.bench import keep_freed_memory, time_interleaved
from cnnops.bench_cases import FAMILIES, FAMILY_NAMES, select_cases

LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def run_case(family, case, min_run_time: float) -> list[dict]:
    cpu = torch.device("cpu")
    prepared = {name: case.prepare(cpu, torch.float32, family.unit, fmt)
                for name, fmt in LAYOUTS.items()}
    for name, p in prepared.items():
        problem = p.check()
        if problem is not None:
            raise RuntimeError(f"{case.op} ({name}): cnnops is wrong: {problem}")
    rows = []
    for pass_ in family.passes:
        keys = [(impl, name) for impl in ("cnnops", "torch") for name in LAYOUTS]
        times = dict(zip(keys, time_interleaved(
            [prepared[name].runners(impl, pass_) for impl, name in keys], min_run_time, cpu)))
        rows.append({
            "op": case.op, "pass": pass_,
            **{f"{impl}_{name}_ms": ms for (impl, name), ms in times.items()},
            "cnnops_ratio": times["cnnops", "channels_last"] / times["cnnops", "nchw"],
            "torch_ratio": times["torch", "channels_last"] / times["torch", "nchw"],
        })
    return rows


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", default=",".join(FAMILY_NAMES),
                        help="comma-separated op families (default: all)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="one shape per family")
    parser.add_argument("--min-run-time", type=float, default=0.25,
                        help="seconds per runner per pass")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    allocator = keep_freed_memory()  # as cnnops bench does
    names = [n for n in args.ops.split(",") if n]
    unknown = set(names) - set(FAMILY_NAMES)
    if unknown:
        parser.error(f"--ops: unknown families {', '.join(sorted(unknown))}")
    families = [f for f in FAMILIES if f.name in names and f.available()]

    print(f"channels_last / NCHW time, {torch.get_num_threads()} threads, float32 "
          f"(above 1: channels_last slower); allocator: {allocator}")
    print(f"{'op':34s} {'pass':17s} {'cnnops NCHW ms':>14s} {'CL / NCHW':>9s} "
          f"{'torch NCHW ms':>13s} {'CL / NCHW':>9s}")
    rows = []
    for family, case in select_cases(families, args.quick, tiny=False):
        for row in run_case(family, case, args.min_run_time):
            rows.append({"family": family.name, **row})
            print(f"{row['op']:34s} {row['pass']:17s} {row['cnnops_nchw_ms']:14.3f} "
                  f"{row['cnnops_ratio']:9.2f} {row['torch_nchw_ms']:13.3f} "
                  f"{row['torch_ratio']:9.2f}", flush=True)
    print("\ngeomean channels_last / NCHW")
    summary = []
    for family in families:
        for pass_ in family.passes:
            own = [r for r in rows if r["family"] == family.name and r["pass"] == pass_]
            if own:
                entry = {"family": family.name, "pass": pass_, "rows": len(own),
                         "cnnops": geomean([r["cnnops_ratio"] for r in own]),
                         "torch": geomean([r["torch_ratio"] for r in own])}
                summary.append(entry)
                print(f"  {family.name:22s} {pass_:17s} cnnops {entry['cnnops']:.2f}   "
                      f"torch {entry['torch']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": torch.get_num_threads(), "allocator": allocator, "rows": rows,
                       "geomean": summary}, f, indent=1)


if __name__ == "__main__":
    main()
