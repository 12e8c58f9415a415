"""The ``cnnops`` command.

    cnnops info     version, build configuration and a ten-second self-check against torch
    cnnops bench    every op raced against native PyTorch on the reference shapes (bench.py)
    cnnops train    train a model on a data set, one process or several (train.py)
    cnnops filters  an image under the classic filters, as a PNG grid (filters.py, viz.py)
    cnnops viz      pictures of a trained checkpoint: filters, feature maps, confusion matrix
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from . import __version__, bench, functional
from ._ops import _C, kernel_version

# (input shape, weight shape, keyword arguments): small, awkward cases for the self-check.
SELF_CHECK_CASES = [
    ((2, 3, 7, 9), (4, 3, 3, 3), {"padding": 1}),
    ((2, 4, 13, 17), (6, 2, 3, 5), {"stride": 2, "dilation": 2, "padding": (1, 2), "groups": 2}),
    ((1, 5, 8, 8), (7, 5, 4, 4), {"padding": "same"}),
    ((3, 16, 12, 12), (24, 16, 1, 1), {}),
    ((2, 19, 33, 35), (37, 19, 3, 3), {"padding": 1}),
]


def build_info() -> dict[str, object]:
    """What this installation is: versions, build switches, instruction set, devices."""
    try:
        from ._build_config import BUILD_CONFIG
    except ImportError:
        BUILD_CONFIG = {}
    info: dict[str, object] = {
        "cnnops": __version__,
        "torch": torch.__version__,
        "compiled against torch": _C.torch_version(),
        "python": platform.python_version(),
        "cpu ISA in use": _C.cpu_isa(),
        "cpu ISA available": _C.cpu_best_isa(),
        "threads": torch.get_num_threads(),
        "cuda kernels": "compiled" if _C.with_cuda() else "not compiled",
        "cuda arch list": BUILD_CONFIG.get("arch_list"),
        "debug build": BUILD_CONFIG.get("debug"),
        "cuda available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["cuda device"] = torch.cuda.get_device_name()
    return info


def _self_check_case(device: str, dtype: torch.dtype, input_shape, weight_shape, kwargs) -> float:
    """Largest error of forward and gradients against torch, relative to the tolerance."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(input_shape, generator=generator, dtype=dtype).to(device)
    w = torch.randn(weight_shape, generator=generator, dtype=dtype).to(device)
    b = torch.randn(weight_shape[0], generator=generator, dtype=dtype).to(device)
    results = []
    # cuDNN's float32 convolutions default to TF32 (10-bit mantissa): the reference must not.
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        for conv in (functional.conv2d, F.conv2d):
            leaves = [t.clone().requires_grad_() for t in (x, w, b)]
            y = conv(*leaves, **kwargs)
            grads = torch.autograd.grad(y, leaves, torch.ones_like(y))
            results.append((y, *grads))
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    worst = 0.0
    for ours, ref in zip(*results):
        limit = tol * (1 + ref.abs().max().item())
        worst = max(worst, (ours - ref).abs().max().item() / limit)
    return worst


def self_check(budget_s: float = 10.0) -> bool:
    """Compares conv2d (every kernel version, dtype and device) with torch; prints a table."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and _C.with_cuda() else [])
    start, ok, ran = time.perf_counter(), True, 0
    for device in devices:
        for dtype in (torch.float32, torch.float64):
            for version in (1, 2):
                for input_shape, weight_shape, kwargs in SELF_CHECK_CASES:
                    if time.perf_counter() - start > budget_s:
                        print(f"  (stopped after {budget_s:.0f} s; {ran} cases checked)")
                        return ok
                    with kernel_version("conv2d", version), warnings.catch_warnings():
                        # torch warns that its own 'same' padding of even kernels copies.
                        warnings.simplefilter("ignore", UserWarning)
                        err = _self_check_case(device, dtype, input_shape, weight_shape, kwargs)
                    passed = err <= 1.0
                    ok &= passed
                    ran += 1
                    args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
                    print(f"  {'ok  ' if passed else 'FAIL'} conv2d v{version} {device} "
                          f"{str(dtype).removeprefix('torch.'):8s} x{input_shape} w{weight_shape} "
                          f"{args}  (error {err:.2g} of tolerance)")
    return ok


def cmd_info(args: argparse.Namespace) -> int:
    for key, value in build_info().items():
        print(f"{key:24s} {value}")
    if args.no_check:
        return 0
    print("self-check: conv2d forward and gradients against torch.nn.functional.conv2d")
    ok = self_check()
    print("self-check passed" if ok else "self-check FAILED")
    return 0 if ok else 1


def cmd_filters(args: argparse.Namespace) -> int:
    from . import viz
    from .filters import BANK
    try:
        image = viz.load_image(args.image, args.max_size)
    except FileNotFoundError as error:
        print(f"cnnops filters: error: {error}", file=sys.stderr)
        return 2
    name = "camera" if args.image == "camera" else Path(args.image).stem
    path = viz.plot_filter_bank(
        image, Path(args.out) / f"filters_{name}.png", args.padding_mode,
        title=f"{name} ({image.shape[0]}x{image.shape[1]}x{image.shape[2]}) under "
              f"{len(BANK)} filters and the edge magnitude, through cnnops.conv2d")
    print(f"wrote {path}")
    return 0


def cmd_viz(args: argparse.Namespace) -> int:
    from . import data, train, viz
    try:
        state = train.load_checkpoint(args.checkpoint)
        model, info = train.model_from_checkpoint(state)
        config = state["config"]
        _, test_set, _ = data.load(config["dataset"], data_dir=args.data_dir or config["data_dir"],
                                   seed=config["seed"], channels=info.channels, size=info.size,
                                   limit=config["limit"])
        written = viz.visualize(model, test_set, info.classes, args.out, info.unnormalize,
                                index=args.index,
                                title=f"{config['model']} on {config['dataset']}: ")
    except (train.TrainError, data.DataError, IndexError) as error:
        print(f"cnnops viz: error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cnnops", description="Hand-written CNN kernels for PyTorch.")
    parser.add_argument("--version", action="version", version=f"cnnops {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="version, build configuration and a self-check")
    info.add_argument("--no-check", action="store_true", help="skip the self-check")
    info.set_defaults(run=cmd_info)
    bench_parser = commands.add_parser(
        "bench", help="time every op against native PyTorch on the reference shapes",
        description=bench.DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_arguments(bench_parser)
    bench_parser.set_defaults(run=bench.main_from_args)
    from . import train
    train_parser = commands.add_parser(
        "train", help="train a model on a data set (defaults: simple_cnn on digits)",
        description=train.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_arguments(train_parser)
    train_parser.set_defaults(run=train.main_from_args)
    filters = commands.add_parser(
        "filters", help="a PNG grid of an image under the classic filters (Sobel, Gaussian, ...)")
    filters.add_argument("--image", default="camera",
                         help="a PNG or JPEG path, or 'camera' (scikit-image's cameraman; the "
                              "default)")
    filters.add_argument("--out", default="runs/filters", metavar="DIR",
                         help="where the PNG goes (default runs/filters)")
    filters.add_argument("--padding-mode", default="replicate",
                         choices=["replicate", "reflect", "zeros"],
                         help="how the border is extended (default replicate)")
    filters.add_argument("--max-size", type=int, default=1024,
                         help="shrink larger images to this many pixels on the long side")
    filters.set_defaults(run=cmd_filters)
    viz = commands.add_parser(
        "viz", help="PNGs of a checkpoint's first-layer filters, feature maps and confusion matrix")
    viz.add_argument("--checkpoint", required=True, help="best.pt or last.pt of cnnops train")
    viz.add_argument("--out", default="runs/viz", metavar="DIR",
                     help="where the PNGs go (default runs/viz)")
    viz.add_argument("--index", type=int, default=0,
                     help="the test image whose feature maps are drawn (default 0)")
    viz.add_argument("--data-dir", metavar="DIR", help="the data folder, if not the "
                     "checkpoint's (mnist, fashion_mnist, cifar10)")
    viz.set_defaults(run=cmd_viz)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
