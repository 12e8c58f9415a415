"""conv2d against native PyTorch on the reference shapes, with torch.utils.benchmark.

    python benchmarks/bench_conv2d.py [--sets simplecnn,vgg16c,vgg16] [--threads 2]
                                      [--dtype float32] [--channels-last] [--version 0]

(`--sets resnet18s`: ResNet-18's strided layers, which are not reference shapes.)

Prints, per shape and pass (forward, forward+backward), the median times of cnnops and of
native torch (oneDNN), the speedup torch_ms / cnnops_ms and cnnops' GFLOP/s, then the
geomean speedup per set. Both run in the same process, one after the other per shape.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch.utils import benchmark

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cnnops  # noqa: E402
from cnnops.bench import keep_freed_memory  # noqa: E402
from shapes import SIMPLE_CNN, VGG16_224, VGG16_CIFAR, ConvShape  # noqa: E402

# Not reference shapes: ResNet-18's strided layers at batch 8 (its 7x7 stem, and the first
# 3x3 conv and the 1x1 downsampling conv of stages 2 to 4), for the strided kernels:
# grad_input by stride phases, and the flat kernels over the input's phases.
RESNET18_STRIDED = [
    ConvShape("resnet18.stem", 8, 3, 224, 224, 64, kernel=7, stride=2, padding=3),
    ConvShape("resnet18.l2c1", 8, 64, 56, 56, 128, kernel=3, stride=2, padding=1),
    ConvShape("resnet18.l2ds", 8, 64, 56, 56, 128, kernel=1, stride=2, padding=0),
    ConvShape("resnet18.l3c1", 8, 128, 28, 28, 256, kernel=3, stride=2, padding=1),
    ConvShape("resnet18.l3ds", 8, 128, 28, 28, 256, kernel=1, stride=2, padding=0),
    ConvShape("resnet18.l4c1", 8, 256, 14, 14, 512, kernel=3, stride=2, padding=1),
    ConvShape("resnet18.l4ds", 8, 256, 14, 14, 512, kernel=1, stride=2, padding=0),
]

SETS = {"simplecnn": SIMPLE_CNN, "vgg16c": VGG16_CIFAR, "vgg16": VGG16_224,
        "resnet18s": RESNET18_STRIDED}


def median_ms(stmt: str, env: dict, min_run_time: float) -> float:
    timer = benchmark.Timer(stmt=stmt, globals=env, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def run_shape(shape: ConvShape, dtype: torch.dtype, channels_last: bool, min_run_time: float):
    x = torch.randn(shape.input_shape, dtype=dtype)
    w = torch.randn(shape.weight_shape, dtype=dtype) * 0.1
    b = torch.randn(shape.out_channels, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    args = dict(stride=shape.stride, padding=shape.padding, groups=shape.groups)
    ours, native = cnnops.conv2d(x, w, b, **args), F.conv2d(x, w, b, **args)
    torch.testing.assert_close(ours, native, rtol=1e-3, atol=1e-3)
    rows = []
    for pass_name in ("forward", "forward+backward"):
        grad = pass_name != "forward"
        xs, ws, bs = (t.detach().clone().requires_grad_(grad) for t in (x, w, b))
        env = {"x": xs, "w": ws, "b": bs, "args": args, "ours": cnnops.conv2d, "native": F.conv2d}
        tail = ".sum().backward()" if grad else ""
        times = {}
        for name in ("ours", "native"):
            times[name] = median_ms(f"{name}(x, w, b, **args){tail}", env, min_run_time)
        flops = shape.flops * (3 if grad else 1)
        rows.append((shape.name, pass_name, times["ours"], times["native"],
                     times["native"] / times["ours"], flops / times["ours"] / 1e6))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="simplecnn,vgg16c,vgg16")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--version", type=int, default=0, help="cnnops conv2d kernel version")
    parser.add_argument("--min-run-time", type=float, default=0.3)
    opts = parser.parse_args()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    print(f"allocator: {keep_freed_memory()}")  # as cnnops bench does
    dtype = getattr(torch, opts.dtype)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {opts.dtype}, "
          f"{'channels_last' if opts.channels_last else 'NCHW'}, cnnops kernel version "
          f"{opts.version}, CPU ISA {cnnops._ops._C.cpu_isa()}")
    print(f"{'layer':18s} {'pass':17s} {'cnnops ms':>10s} {'torch ms':>10s} {'speedup':>8s} {'GFLOP/s':>8s}")
    with cnnops.kernel_version("conv2d", opts.version):
        for set_name in opts.sets.split(","):
            speedups: dict[str, list[float]] = {"forward": [], "forward+backward": []}
            for shape in SETS[set_name]:
                for name, pass_name, ours, native, speedup, gflops in run_shape(
                        shape, dtype, opts.channels_last, opts.min_run_time):
                    speedups[pass_name].append(speedup)
                    print(f"{name:18s} {pass_name:17s} {ours:10.3f} {native:10.3f} "
                          f"{speedup:8.2f} {gflops:8.1f}", flush=True)
            for pass_name, values in speedups.items():
                geomean = math.exp(sum(map(math.log, values)) / len(values))
                print(f"  {set_name} {pass_name}: geomean speedup {geomean:.2f}x")


if __name__ == "__main__":
    main()
