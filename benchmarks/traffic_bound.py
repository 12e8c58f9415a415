"""How fast the memory-bound ops could run at all: each `cnnops bench` case of depthwise
convolution and pooling against the time a plain copy of its tensors takes on this machine.

    python benchmarks/traffic_bound.py [--ops depthwise,max_pool2d,...] [--threads 2]
                                       [--min-run-time 0.5] [--tiny] [--json PATH]

Any implementation of a pass must read each operand once and write each result once. Per case
this script counts those bytes (the least traffic of the pass):

    forward            input + weight + output
    forward+backward   the forward's, then grad_output read and grad_input written, and for
                       ops with weights the input read again (grad_weight needs it)

and times `dst.copy_(src)` of a tensor as large as the case's input in the same loop as
cnnops and torch (cnnops.bench.time_interleaved), which gives the copy rate at that size
(tensors of a few MB stay in the caches; the copy rate there is above `cnnops bench`'s
streaming peak). bound = least traffic / copy rate: no kernel runs the pass faster than a
copy moves its bytes. Printed per row: torch / bound, the most any kernel could gain over
native, next to torch / cnnops, what cnnops gains, and bound / cnnops, how close cnnops runs
to the copy. A speed goal above torch / bound cannot be met on this machine.
"""

from __future__ import annotations

import argparse
import json
import math

import torch

from cnnops.bench import keep_freed_memory, time_interleaved
from cnnops.bench_cases import FAMILIES, select_cases

MEMORY_BOUND = ("depthwise", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
                "adaptive_max_pool2d")


def least_bytes(inputs: list[torch.Tensor], output: torch.Tensor, pass_: str) -> int:
    """The bytes a pass must move at least (see the module's docstring)."""
    x, weights = inputs[0], [t for t in inputs[1:] if t is not None]
    forward = sum(t.nbytes for t in inputs if t is not None) + output.nbytes
    if pass_ == "forward":
        return forward
    backward = output.nbytes + x.nbytes + (x.nbytes if weights else 0)
    return forward + backward


def run_case(case, min_run_time: float) -> list[dict]:
    inputs = [t if t is None else t.contiguous()
              for t in case.make_inputs(torch.Generator().manual_seed(0))]
    output = case.native(*inputs)
    leaves = [t if t is None else t.clone().requires_grad_() for t in inputs]
    grad_leaves = [t for t in leaves if t is not None]
    grad_output = torch.randn_like(output)
    src, dst = torch.randn_like(inputs[0]), torch.empty_like(inputs[0])

    def runners(fn):
        return {"forward": lambda: fn(*inputs),
                "forward+backward": lambda: torch.autograd.grad(fn(*leaves), grad_leaves,
                                                                grad_output)}

    ours, native = runners(case.ours), runners(case.native)
    rows = []
    for pass_ in ("forward", "forward+backward"):
        copy_ms, cnnops_ms, torch_ms = time_interleaved(
            [lambda: dst.copy_(src), ours[pass_], native[pass_]], min_run_time,
            torch.device("cpu"))
        copy_rate = 2 * src.nbytes / copy_ms  # bytes per ms: read once, written once
        bound_ms = least_bytes(inputs, output, pass_) / copy_rate
        rows.append({"op": case.op, "shape": case.shape, "pass": pass_,
                     "copy_gb_s": copy_rate / 1e6, "bound_ms": bound_ms,
                     "cnnops_ms": cnnops_ms, "torch_ms": torch_ms,
                     "torch_over_bound": torch_ms / bound_ms,
                     "torch_over_cnnops": torch_ms / cnnops_ms,
                     "bound_over_cnnops": bound_ms / cnnops_ms})
    return rows


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", default=",".join(MEMORY_BOUND),
                        help=f"comma-separated families among {', '.join(MEMORY_BOUND)}")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--min-run-time", type=float, default=0.5)
    parser.add_argument("--tiny", action="store_true",
                        help="tiny shapes: a smoke test of the script; the timings mean nothing")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    wanted = args.ops.split(",")
    unknown = sorted(set(wanted) - set(MEMORY_BOUND))
    if unknown:
        parser.error(f"--ops: {', '.join(unknown)} not among {', '.join(MEMORY_BOUND)}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    keep_freed_memory()

    families = [f for f in FAMILIES if f.name in wanted]
    rows = []
    print(f"{'op':28} {'pass':16} {'copy GB/s':>9} {'bound ms':>9} {'cnnops':>8} {'torch':>8}"
          f" {'torch/bound':>11} {'torch/cnnops':>12} {'bound/cnnops':>12}")
    for _, case in select_cases(families, quick=False, tiny=args.tiny):
        for row in run_case(case, args.min_run_time):
            rows.append(row)
            print(f"{row['op']:28} {row['pass']:16} {row['copy_gb_s']:9.1f} "
                  f"{row['bound_ms']:9.3f} {row['cnnops_ms']:8.3f} {row['torch_ms']:8.3f} "
                  f"{row['torch_over_bound']:10.2f}x {row['torch_over_cnnops']:11.2f}x "
                  f"{row['bound_over_cnnops']:11.2f}", flush=True)
    print("\ngeomean per family and pass: torch/bound (the most any kernel could gain), "
          "torch/cnnops")
    for family in families:
        for pass_ in ("forward", "forward+backward"):
            sel = [r for r in rows if r["op"].startswith(family.name + ".") and r["pass"] == pass_]
            if sel:
                print(f"  {family.name:20} {pass_:16} "
                      f"{geomean([r['torch_over_bound'] for r in sel]):6.2f}x "
                      f"{geomean([r['torch_over_cnnops'] for r in sel]):6.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": torch.get_num_threads(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
