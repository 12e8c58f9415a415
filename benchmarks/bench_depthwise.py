"""Depthwise convolution and the fused depthwise-separable operator against native PyTorch
on MobileNetV1's layers (batch 8), with torch.utils.benchmark.

    python benchmarks/bench_depthwise.py [--parts depthwise,separable] [--layers 112,56s2,...]
                                         [--threads 2] [--dtype float32] [--channels-last]
                                         [--version 0] [--separable-backward] [--cpu-time]

depthwise: cnnops.conv2d(groups=C) (the depthwise kernels) against F.conv2d(groups=C), forward
           and forward+backward, with cnnops' GFLOP/s and effective GB/s (input read once,
           output written once).
separable: cnnops.depthwise_separable_conv2d forward against the native two-conv sequence
           F.conv2d(F.conv2d(x, dw, groups=C), pw) and against cnnops' own two ops
           cnnops.conv2d(cnnops.conv2d(x, dw, groups=C), pw); --separable-backward adds
           forward+backward.

Every candidate of a row is timed in alternating rounds (ours, native, ours, ...) and each
keeps its median of rounds, so drift on a busy machine hits all alike. Ratios compare runs of
one process only: native's timings vary between processes (its depthwise path is bimodal
here, 2-16 ms on the first layer single-threaded), so quote ratios, not absolute times from
different runs. Version 0 is automatic (fast), 1 the reference kernels. On a machine shared
with other work, --cpu-time (with --threads 1) times the thread's CPU time instead of wall
time, which leaves out the time slices the OS gives to other processes.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import timeit

import torch
import torch.nn.functional as F
from torch.utils import benchmark

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cnnops  # noqa: E402
from cnnops.bench import keep_freed_memory  # noqa: E402
from shapes import MOBILENET_V1, SeparableShape  # noqa: E402


CLOCK = timeit.default_timer  # wall time; --cpu-time: the calling thread's CPU time


def median_ms(stmt: str, env: dict, min_run_time: float) -> float:
    timer = benchmark.Timer(stmt=stmt, globals=env, num_threads=torch.get_num_threads(),
                            timer=CLOCK)
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def race(stmts: dict[str, str], env: dict, min_run_time: float, rounds: int) -> dict[str, float]:
    """Median over alternating rounds of each statement's median time (ms)."""
    times: dict[str, list[float]] = {name: [] for name in stmts}
    for stmt in stmts.values():  # warm-up: first-call allocations stay out of the rounds
        benchmark.Timer(stmt=stmt, globals=env, timer=CLOCK).timeit(2)
    for _ in range(rounds):
        for name, stmt in stmts.items():
            times[name].append(median_ms(stmt, env, min_run_time))
    return {name: sorted(ts)[len(ts) // 2] for name, ts in times.items()}


def layer_name(block: SeparableShape) -> str:
    return block.name.removeprefix("mbv1.ds")


def operands(block: SeparableShape, dtype, channels_last: bool):
    dw, pw = block.depthwise, block.pointwise
    x = torch.randn(dw.input_shape, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    dw_w = torch.randn(dw.weight_shape, dtype=dtype) / 3
    pw_w = torch.randn(pw.weight_shape, dtype=dtype) / math.sqrt(pw.in_channels)
    dw_b, pw_b = torch.randn(dw.out_channels, dtype=dtype), torch.randn(pw.out_channels, dtype=dtype)
    return x, dw_w, pw_w, dw_b, pw_b


def bench_depthwise(block: SeparableShape, dtype, channels_last, min_run_time, rounds):
    dw = block.depthwise
    x, w, _, b, _ = operands(block, dtype, channels_last)
    args = dict(stride=dw.stride, padding=dw.padding, groups=dw.groups)
    torch.testing.assert_close(cnnops.conv2d(x, w, b, **args), F.conv2d(x, w, b, **args),
                               rtol=1e-4, atol=1e-4)
    out_hw = dw.output_hw
    bytes_moved = (x.numel() + dw.batch * dw.out_channels * out_hw[0] * out_hw[1]) * x.element_size()
    rows = []
    for pass_name in ("forward", "forward+backward"):
        grad = pass_name != "forward"
        xs, ws, bs = (t.detach().clone().requires_grad_(grad) for t in (x, w, b))
        env = {"x": xs, "w": ws, "b": bs, "args": args, "ours": cnnops.conv2d, "native": F.conv2d}
        tail = ".sum().backward()" if grad else ""
        t = race({n: f"{n}(x, w, b, **args){tail}" for n in ("ours", "native")}, env,
                 min_run_time, rounds)
        work = 3 if grad else 1
        rows.append((f"dw{layer_name(block)}", pass_name, t["ours"], t["native"],
                     t["native"] / t["ours"], work * dw.flops / t["ours"] / 1e6,
                     work * bytes_moved / t["ours"] / 1e6))
    return rows


def bench_separable(block: SeparableShape, dtype, channels_last, min_run_time, rounds,
                    backward: bool):
    dw = block.depthwise
    x, dw_w, pw_w, dw_b, pw_b = operands(block, dtype, channels_last)
    kwargs = dict(stride=dw.stride, padding=dw.padding)
    C = dw.in_channels
    native = F.conv2d(F.conv2d(x, dw_w, dw_b, groups=C, **kwargs), pw_w, pw_b)
    torch.testing.assert_close(cnnops.depthwise_separable_conv2d(x, dw_w, pw_w, dw_b, pw_b, **kwargs),
                               native, rtol=1e-3, atol=1e-3)
    stmts = {
        "fused": "cnnops.depthwise_separable_conv2d(x, dw_w, pw_w, dw_b, pw_b, **kwargs){tail}",
        "native": "F.conv2d(F.conv2d(x, dw_w, dw_b, groups=C, **kwargs), pw_w, pw_b){tail}",
        "two_ops": "cnnops.conv2d(cnnops.conv2d(x, dw_w, dw_b, groups=C, **kwargs), pw_w, pw_b){tail}",
    }
    rows = []
    for pass_name in ("forward", "forward+backward") if backward else ("forward",):
        grad = pass_name != "forward"
        tensors = [t.detach().clone().requires_grad_(grad) for t in (x, dw_w, pw_w, dw_b, pw_b)]
        env = dict(zip(("x", "dw_w", "pw_w", "dw_b", "pw_b"), tensors), kwargs=kwargs, C=C,
                   cnnops=cnnops, F=F)
        tail = ".sum().backward()" if grad else ""
        t = race({n: s.format(tail=tail) for n, s in stmts.items()}, env, min_run_time, rounds)
        work = 3 if grad else 1
        rows.append((f"ds{layer_name(block)}", pass_name, t["fused"], t["native"], t["two_ops"],
                     t["native"] / t["fused"], t["two_ops"] / t["fused"],
                     work * block.flops / t["fused"] / 1e6))
    return rows


def geomean(values):
    return math.exp(sum(map(math.log, values)) / len(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="depthwise,separable")
    parser.add_argument("--layers", default=None,
                        help="comma-separated layer names (112, 112s2, 56, ...); default all")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--version", type=int, default=0, help="cnnops depthwise kernel version")
    parser.add_argument("--separable-backward", action="store_true")
    parser.add_argument("--min-run-time", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu-time", action="store_true",
                        help="time the thread's CPU time (needs --threads 1)")
    opts = parser.parse_args()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    print(f"allocator: {keep_freed_memory()}")  # as cnnops bench does
    if opts.cpu_time:
        if torch.get_num_threads() != 1:
            parser.error("--cpu-time measures one thread: add --threads 1")
        global CLOCK
        CLOCK = time.thread_time
    dtype = getattr(torch, opts.dtype)
    blocks = [b for b in MOBILENET_V1
              if opts.layers is None or layer_name(b) in opts.layers.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {opts.dtype}, "
          f"{'channels_last' if opts.channels_last else 'NCHW'}, cnnops depthwise kernel version "
          f"{opts.version}, CPU ISA {cnnops._ops._C.cpu_isa()}, "
          f"{'thread CPU' if opts.cpu_time else 'wall'} time")
    parts = opts.parts.split(",")
    with cnnops.kernel_version("depthwise", opts.version):
        if "depthwise" in parts:
            print("\ndepthwise 3x3: cnnops.conv2d(groups=C) vs F.conv2d(groups=C)")
            print(f"{'layer':10s} {'pass':17s} {'cnnops ms':>10s} {'torch ms':>10s} "
                  f"{'speedup':>8s} {'GFLOP/s':>8s} {'GB/s':>7s}")
            speedups: dict[str, list[float]] = {"forward": [], "forward+backward": []}
            for block in blocks:
                for name, pass_name, ours, native, speedup, gflops, gbs in bench_depthwise(
                        block, dtype, opts.channels_last, opts.min_run_time, opts.rounds):
                    speedups[pass_name].append(speedup)
                    print(f"{name:10s} {pass_name:17s} {ours:10.3f} {native:10.3f} "
                          f"{speedup:8.2f} {gflops:8.1f} {gbs:7.1f}", flush=True)
            for pass_name, values in speedups.items():
                print(f"  depthwise {pass_name}: geomean speedup {geomean(values):.2f}x")
        if "separable" in parts:
            print("\ndepthwise-separable (dw 3x3 + pw 1x1): fused vs native two convs and vs "
                  "cnnops' two ops")
            print(f"{'layer':10s} {'pass':17s} {'fused ms':>10s} {'torch ms':>10s} "
                  f"{'2-op ms':>10s} {'vs torch':>9s} {'vs 2-op':>8s} {'GFLOP/s':>8s}")
            ratios: dict[str, list[tuple[float, float]]] = {}
            for block in blocks:
                for name, pass_name, fused, native, two, vs_native, vs_two, gflops in bench_separable(
                        block, dtype, opts.channels_last, opts.min_run_time, opts.rounds,
                        opts.separable_backward):
                    ratios.setdefault(pass_name, []).append((vs_native, vs_two))
                    print(f"{name:10s} {pass_name:17s} {fused:10.3f} {native:10.3f} {two:10.3f} "
                          f"{vs_native:9.2f} {vs_two:8.2f} {gflops:8.1f}", flush=True)
            for pass_name, values in ratios.items():
                print(f"  separable {pass_name}: geomean {geomean([v[0] for v in values]):.2f}x "
                      f"native, {geomean([v[1] for v in values]):.2f}x cnnops' two ops")


if __name__ == "__main__":
    main()
