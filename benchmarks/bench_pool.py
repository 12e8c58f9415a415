"""Pooling against native PyTorch on the reference shapes, with torch.utils.benchmark.

    python benchmarks/bench_pool.py [--threads 2] [--dtype float32] [--channels-last]
                                    [--version 0] [--min-run-time 0.3] [--stat median]

Prints, per shape and pass (forward, forward+backward), the median times of cnnops and of
native torch, the speedup torch_ms / cnnops_ms, cnnops' GB/s (bytes read and written, as
PoolCase.bytes_moved counts them, over its time) and that as a fraction of this machine's
memory bandwidth, measured first with a copy larger than the caches. Both run in the same
process, one after the other per shape: compare ratios within one run only. The backward
pass is torch.autograd.grad with a materialised grad_output: sum().backward() would hand
the kernels an expanded gradient they barely read, and .backward() would add each
iteration's gradient into x.grad, a pass over the input that belongs to neither side.
On a machine shared with other jobs, --stat min (the fastest of the timed blocks) is the
steadier figure: interference only ever adds time.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils import benchmark

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cnnops  # noqa: E402
from cnnops.bench import keep_freed_memory  # noqa: E402
from shapes import GLOBAL_POOL_SHAPES, POOL_SHAPES, PoolShape  # noqa: E402


@dataclass(frozen=True)
class PoolCase:
    """One pooling call on a reference shape: `kind` is max, avg, adaptive_avg or
    adaptive_max; adaptive kinds pool globally, the others use the shape's window."""

    kind: str
    shape: PoolShape

    @property
    def name(self) -> str:
        return f"{self.kind}.{self.shape.name}"

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return self.shape.input_shape

    @property
    def kernel(self) -> int:
        return self.shape.kernel

    @property
    def stride(self) -> int:
        return self.shape.stride

    @property
    def padding(self) -> int:
        return self.shape.padding

    output_size = 1

    def bytes_moved(self, element_size: int, backward: bool) -> int:
        """Bytes read and written by the forward pass (input, output, int64 indices for max
        pooling), plus, with backward, by the backward pass (grad_output and indices read,
        grad_input written)."""
        out_h, out_w = self.shape.output_hw
        n, c, h, w = self.input_shape
        inputs, outputs = n * c * h * w, n * c * out_h * out_w
        index_bytes = 8 * outputs if "max" in self.kind else 0
        total = (inputs + outputs) * element_size + index_bytes
        if backward:
            total += (outputs + inputs) * element_size + index_bytes
        return total


CASES = ([PoolCase(kind, shape) for shape in POOL_SHAPES for kind in ("max", "avg")]
         + [PoolCase(kind, shape) for shape in GLOBAL_POOL_SHAPES
            for kind in ("adaptive_avg", "adaptive_max")])


STAT = "median"


def median_ms(stmt: str, env: dict, min_run_time: float) -> float:
    """The median (or, with --stat min, the fastest) time per run of the timed blocks."""
    timer = benchmark.Timer(stmt=stmt, globals=env, num_threads=torch.get_num_threads())
    measurement = timer.blocked_autorange(min_run_time=min_run_time)
    return (min(measurement.times) if STAT == "min" else measurement.median) * 1e3


def memory_bandwidth_gbs(min_run_time: float) -> float:
    """Copy bandwidth (bytes read + written per second) of 256 MiB buffers, past any cache."""
    src = torch.ones(64 * 2**20)
    dst = torch.empty_like(src)
    ms = median_ms("dst.copy_(src)", {"src": src, "dst": dst}, min_run_time)
    return 2 * src.numel() * src.element_size() / ms / 1e6


def pool_functions(shape: PoolCase):
    """(cnnops function, native function, keyword arguments) for the shape."""
    if shape.kind.startswith("adaptive"):
        name, args = f"{shape.kind}_pool2d", dict(output_size=shape.output_size)
    else:
        name = f"{shape.kind}_pool2d"
        args = dict(kernel_size=shape.kernel, stride=shape.stride, padding=shape.padding)
    return getattr(cnnops, name), getattr(F, name), args


def run_shape(shape: PoolCase, dtype: torch.dtype, channels_last: bool, min_run_time: float):
    x = torch.randn(shape.input_shape, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ours, native, args = pool_functions(shape)
    expected = native(x, **args)
    torch.testing.assert_close(ours(x, **args), expected)
    grad = torch.randn_like(expected)
    rows = []
    for pass_name in ("forward", "forward+backward"):
        backward = pass_name != "forward"
        xs = x.detach().clone().requires_grad_(backward)
        env = {"x": xs, "g": grad, "args": args, "ours": ours, "native": native,
               "grad": torch.autograd.grad}
        times = {name: median_ms(f"grad({name}(x, **args), x, g)" if backward
                                 else f"{name}(x, **args)", env, min_run_time)
                 for name in ("ours", "native")}
        gbs = shape.bytes_moved(x.element_size(), backward) / times["ours"] / 1e6
        rows.append((shape.name, pass_name, times["ours"], times["native"],
                     times["native"] / times["ours"], gbs))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--version", type=int, default=0, help="cnnops pool kernel version")
    parser.add_argument("--min-run-time", type=float, default=0.3)
    parser.add_argument("--shapes", default="", help="comma-separated shape names (default: all)")
    parser.add_argument("--stat", default="median", choices=["median", "min"],
                        help="median of the timed blocks, or the fastest (steadier when shared)")
    opts = parser.parse_args()
    global STAT
    STAT = opts.stat
    if opts.threads:
        torch.set_num_threads(opts.threads)
    print(f"allocator: {keep_freed_memory()}")  # as cnnops bench does
    dtype = getattr(torch, opts.dtype)
    peak = memory_bandwidth_gbs(opts.min_run_time)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {opts.dtype}, "
          f"{'channels_last' if opts.channels_last else 'NCHW'}, cnnops pool kernel version "
          f"{opts.version}, CPU ISA {cnnops._ops._C.cpu_isa()}, {opts.stat} times, memory "
          f"bandwidth (copy) {peak:.1f} GB/s")
    print(f"{'shape':20s} {'pass':17s} {'cnnops ms':>10s} {'torch ms':>10s} {'speedup':>8s} "
          f"{'GB/s':>7s} {'of peak':>8s}")
    wanted = set(filter(None, opts.shapes.split(",")))
    with cnnops.kernel_version("pool", opts.version):
        for shape in CASES:
            if wanted and shape.name not in wanted:
                continue
            for name, pass_name, ours, native, speedup, gbs in run_shape(
                    shape, dtype, opts.channels_last, opts.min_run_time):
                print(f"{name:20s} {pass_name:17s} {ours:10.3f} {native:10.3f} {speedup:8.2f} "
                      f"{gbs:7.1f} {gbs / peak:8.0%}", flush=True)


if __name__ == "__main__":
    main()
