"""``cnnops bench``: every cnnops op raced against native PyTorch on the reference shapes.

For each op family that exists in this build and each of its reference shapes
(cnnops.bench_shapes), the harness first checks cnnops against torch (forward output and
every input gradient; an op whose result is wrong is refused, not timed), then times
forward and forward+backward of both, interleaved in alternating blocks after warm-up so that
drift on a busy machine hits both alike. End-to-end rows time a training step and inference
of SimpleCNN and a VGG-16 for CIFAR built from torch.nn layers, as they are against as
cnnops.convert makes them; `fused.*` rows time their inference through cnnops.fuse
(convolution, bias and ReLU as one operator) against torch's eager network.

How to read a row:
    speedup         torch_ms / cnnops_ms: above 1, cnnops is faster
    rate            what cnnops achieved: GFLOP/s (multiply-adds count two) for compute-bound
                    ops, GB/s for memory-bound ones (pooling, depthwise), counting every
                    operand read once and the result written once; forward+backward counts
                    3x the forward's work for ops with weights, 2x for pooling
    peak_fraction   rate / this machine's peak, measured at start-up: on the CPU an FMA loop
                    on every thread with the ISA cnnops runs (GFLOP/s) and a streaming copy
                    (GB/s); on CUDA a device-to-device copy and the FMA / tensor-core peak
                    computed from the device's properties

The cases and op families live in bench_cases.py, the table, JSON, CSV and plot in
bench_report.py; this module measures the peaks, times, and runs the command line.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import datetime
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

import cnnops

from ._ops import _C
from .bench_cases import FAMILIES, FAMILY_NAMES, Family, OpCase, select_cases
from .bench_report import (Reporter, Results, print_header, print_results, write_csv,
                           write_json, write_plot)

# `cnnops bench --help`: the docstring down to the note on modules.
DESCRIPTION = __doc__.split("\n\nThe cases and op families")[0].replace("``", "")
DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
          "bfloat16": torch.bfloat16}


class BenchError(Exception):
    """A problem with the request (device, dtype, op family): reported in one line."""


# --------------------------------------------------------------------------------------
# Peaks: this machine's limits, for the napkin math.

# (major, minor) compute capability -> (FP32 lanes per SM, FP64 lanes per SM, dense FP16
# tensor-core flops per SM per clock, FP64 tensor-core speed-up). From NVIDIA's
# architecture white papers; approximate, as the clock in use is.
_SM_THROUGHPUT = {
    (7, 0): (64, 32, 1024, 1), (7, 5): (64, 2, 1024, 1),
    (8, 0): (64, 32, 2048, 2), (8, 6): (128, 2, 1024, 1), (8, 7): (128, 2, 1024, 1),
    (8, 9): (128, 2, 1024, 1), (9, 0): (128, 64, 4096, 2), (10, 0): (128, 64, 8192, 1),
    (12, 0): (128, 2, 1024, 1),
}


def measure_cpu_peaks(seconds: float, copy_bytes: int) -> dict:
    return {
        "method": "FMA loop on every thread with the ISA in use; parallel memcpy "
                  f"of {copy_bytes >> 20} MiB, bytes read + written (best of repeats)",
        "isa": _C.cpu_isa(),
        "threads": torch.get_num_threads(),
        "fma_gflops": {"float32": _C.cpu_fma_peak_gflops(False, seconds),
                       "float64": _C.cpu_fma_peak_gflops(True, seconds)},
        "copy_gbs": _C.cpu_copy_bandwidth_gbs(copy_bytes, seconds),
    }


def _cuda_copy_gbs(device: torch.device, seconds: float) -> float:
    total = torch.cuda.get_device_properties(device).total_memory
    n = min(1 << 30, total // 8)
    src = torch.empty(n, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best, spent = math.inf, 0.0
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for repeat in range(1000):
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        elapsed = start.elapsed_time(end) / 1e3
        best, spent = min(best, elapsed), spent + elapsed
        if repeat >= 3 and spent >= seconds:
            break
    return 2 * n / best / 1e9


def measure_cuda_peaks(device: torch.device, seconds: float) -> dict:
    props = torch.cuda.get_device_properties(device)
    peaks: dict = {
        "method": "device-to-device copy, bytes read + written (best of repeats); FMA and "
                  "tensor-core peaks from SM count x per-SM throughput x clock",
        "copy_gbs": _cuda_copy_gbs(device, seconds),
        "fma_gflops": {}, "tensor_gflops": {},
    }
    clock_khz = getattr(props, "clock_rate", None)  # absent before torch ~2.9
    memory_khz, bus_bits = getattr(props, "memory_clock_rate", None), getattr(props, "memory_bus_width", None)
    if memory_khz and bus_bits:
        peaks["dram_gbs_spec"] = 2 * memory_khz * 1e3 * bus_bits / 8 / 1e9
    throughput = _SM_THROUGHPUT.get((props.major, props.minor))
    if clock_khz and throughput:
        fp32_lanes, fp64_lanes, tensor_per_clock, fp64_tensor = throughput
        sm_ghz = props.multi_processor_count * clock_khz * 1e-6  # SMs x GHz
        peaks["clock_mhz"] = clock_khz / 1e3
        peaks["fma_gflops"] = {"float32": 2 * fp32_lanes * sm_ghz,
                               "float64": 2 * fp64_lanes * sm_ghz}
        if fp64_tensor > 1:  # FP64 tensor cores (A100, H100)
            peaks["tensor_gflops"]["float64"] = 2 * fp64_lanes * fp64_tensor * sm_ghz
        if props.major >= 7:
            peaks["tensor_gflops"]["float16"] = tensor_per_clock * sm_ghz
        if props.major >= 8:
            peaks["tensor_gflops"]["bfloat16"] = tensor_per_clock * sm_ghz
            peaks["tensor_gflops"]["tf32"] = tensor_per_clock / 2 * sm_ghz
    return peaks


def peak_for(peaks: dict, dtype: str, unit: str) -> float | None:
    """The machine's peak for work in `dtype`: copy bandwidth for GB/s; for GFLOP/s the FMA
    peak in that dtype, or the tensor-core one where it computes in that dtype (float16,
    bfloat16; TF32 is not float32)."""
    if unit == "GB/s":
        return peaks.get("copy_gbs")
    return peaks.get("tensor_gflops", {}).get(dtype) or peaks.get("fma_gflops", {}).get(dtype)


def describe_machine(device: torch.device) -> dict:
    cpu_model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    machine = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cpu_isa": _C.cpu_isa(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cnnops": cnnops.__version__,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        machine.update({
            "device_name": props.name,
            "compute_capability": f"{props.major}.{props.minor}",
            "sm_count": props.multi_processor_count,
            "device_memory_gib": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        })
    return machine


# --------------------------------------------------------------------------------------
# Timing.


def _timed_block(fn: Callable[[], object], calls: int, device: torch.device) -> float:
    """Seconds for `calls` back-to-back calls: CUDA events on the GPU, the wall clock on the
    CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    start_s = time.perf_counter()
    for _ in range(calls):
        fn()
    return time.perf_counter() - start_s


def time_interleaved(runners: Sequence[Callable[[], object]], min_run_time: float,
                     device: torch.device, warmup: int = 1) -> list[float]:
    """Median milliseconds per call of each runner.

    After `warmup` calls of each (allocator, caches, cuDNN autotuning), the runners take
    turns in blocks sized to about a fifth of `min_run_time`, in alternating order, until
    each has run for `min_run_time` and at least three blocks; a block's time divided by its
    calls is one sample.
    """
    for fn in runners:
        for _ in range(warmup):
            fn()
    estimates = [_timed_block(fn, 1, device) for fn in runners]
    calls = [max(1, int(min_run_time / 5 / max(e, 1e-7))) for e in estimates]
    samples: list[list[float]] = [[] for _ in runners]
    spent = [0.0] * len(runners)
    order = list(range(len(runners)))
    while min(spent) < min_run_time or min(len(s) for s in samples) < 3:
        for i in order:
            elapsed = _timed_block(runners[i], calls[i], device)
            samples[i].append(elapsed / calls[i])
            spent[i] += elapsed
        order.reverse()
    return [statistics.median(s) * 1e3 for s in samples]


# --------------------------------------------------------------------------------------
# The run.


@dataclasses.dataclass
class Options:
    device: str = "cpu"
    ops: list[str] | None = None
    dtype: str = "float32"
    threads: int | None = None
    quick: bool = False
    tiny: bool = False
    channels_last: bool = False
    min_run_time: float | None = None
    json: str | None = None
    csv: str | None = None
    plot: str | None = None
    inject_wrong: list[str] = dataclasses.field(default_factory=list)
    allocator_defaults: bool = False


def _validate(options: Options) -> tuple[torch.device, torch.dtype, list[Family]]:
    if options.device not in ("cpu", "cuda"):
        raise BenchError(f"--device must be 'cpu' or 'cuda', got {options.device!r}")
    if options.device == "cuda":
        if not torch.cuda.is_available():
            raise BenchError("--device cuda: no CUDA GPU is visible to torch "
                             "(torch.cuda.is_available() is False); run on a GPU machine, "
                             "or use --device cpu")
        if not _C.with_cuda():
            raise BenchError("--device cuda: cnnops was built without its CUDA kernels; "
                             "rebuild with FORCE_CUDA=1 pip install --no-build-isolation -e .")
    if options.dtype not in DTYPES:
        raise BenchError(f"--dtype must be one of {', '.join(DTYPES)}, got {options.dtype!r}")
    if options.device == "cpu" and options.dtype in ("float16", "bfloat16"):
        raise BenchError(f"--dtype {options.dtype}: cnnops' CPU kernels support float32 and "
                         "float64 only; use --device cuda")
    names = options.ops or FAMILY_NAMES
    unknown = [n for n in names if n not in FAMILY_NAMES]
    if unknown:
        raise BenchError(f"--ops: unknown op famil{'y' if len(unknown) == 1 else 'ies'} "
                         f"{', '.join(unknown)}; known: {', '.join(FAMILY_NAMES)}")
    if options.threads is not None and options.threads < 1:
        raise BenchError(f"--threads must be at least 1, got {options.threads}")
    return torch.device(options.device), DTYPES[options.dtype], [f for f in FAMILIES if f.name in names]


def _wrong_on_purpose(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """The test hook behind --inject-wrong: cnnops' result, off by one everywhere."""
    return lambda *args: fn(*args) + 1


def keep_freed_memory() -> str:
    """Has glibc keep freed memory for the process instead of giving it back to the system.

    A timed call's outputs are freed and allocated again at every call. Whether glibc then
    hands back the same pages or new ones, whose first touch costs a page fault each,
    depended on its trimming and mmap thresholds as the run had moved them: single rows
    changed 2x between runs of one build (the cost, up to ~5 ms, falls on whichever side
    allocates the larger buffers). With no trimming and large blocks kept off mmap up to
    glibc's 32 MiB maximum, both sides reuse their pages and the timings measure the
    kernels. Returns the setting, as recorded in the results.
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # (TypeError: no CDLL(None) on Windows)
        return "default (no mallopt: not glibc)"
    m_trim_threshold, m_mmap_threshold = -1, -3
    if mallopt(m_trim_threshold, 1 << 30) != 1 or mallopt(m_mmap_threshold, 32 << 20) != 1:
        return "default (mallopt refused)"
    global _freed_memory_kept
    _freed_memory_kept = True
    return _KEPT


_KEPT = "glibc: freed memory kept (trim threshold 1 GiB, mmap threshold 32 MiB)"
_freed_memory_kept = False  # set for the rest of the process once keep_freed_memory ran


def run(options: Options) -> Results:
    """Checks and times every selected case; the caller prints and writes the results."""
    device, dtype, families = _validate(options)
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    if not options.allocator_defaults:
        allocator = keep_freed_memory()
    else:
        allocator = (_KEPT + ", by an earlier run in this process" if _freed_memory_kept
                     else "default")
    min_run_time = options.min_run_time
    if min_run_time is None:
        min_run_time = 0.005 if options.tiny else 0.1 if options.quick else 0.25
    peak_seconds, copy_bytes = (0.01, 16 << 20) if options.tiny else (0.2, 256 << 20)

    available = [f for f in families if f.available()]
    skipped = [{"family": f.name, "reason": f"cnnops has no {f.requires} yet"
                + (f" ({f.note})" if f.note else "")} for f in families if not f.available()]
    cases = select_cases(available, options.quick, options.tiny)
    unknown = set(options.inject_wrong) - {case.op for _, case in cases if isinstance(case, OpCase)}
    if unknown:
        raise BenchError(f"--inject-wrong: no selected single op is named {', '.join(sorted(unknown))}")

    peaks = measure_cuda_peaks(device, peak_seconds) if device.type == "cuda" \
        else measure_cpu_peaks(peak_seconds, copy_bytes)
    settings = {"device": options.device, "dtype": options.dtype, "threads": torch.get_num_threads(),
                "quick": options.quick, "tiny": options.tiny, "min_run_time_s": min_run_time,
                "memory_format": "channels_last" if options.channels_last else "contiguous",
                "allocator": allocator, "families": [f.name for f in available]}
    results = Results(describe_machine(device), peaks, settings, skipped=skipped)

    saved_flags = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32)
    torch.backends.cudnn.benchmark = True  # native's best algorithms (cnnops does not use cuDNN)
    try:
        with Reporter(len(cases)) as reporter:
            print_header(results, reporter)
            for family, case in cases:
                reporter.starting(case.op)
                _run_case(family, case, device, dtype, options, min_run_time, results, reporter)
                reporter.advance()
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = saved_flags
    return results


def _run_case(family: Family, case, device: torch.device, dtype: torch.dtype, options: Options,
              min_run_time: float, results: Results, reporter: Reporter) -> None:
    if case.op in options.inject_wrong:
        case = dataclasses.replace(case, ours=_wrong_on_purpose(case.ours))
    base = {"op": case.op, "shape": case.shape, "device": options.device, "dtype": options.dtype}
    torch.backends.cudnn.allow_tf32 = False  # the reference is full float32
    try:
        memory_format = torch.channels_last if options.channels_last else torch.contiguous_format
        prepared = case.prepare(device, dtype, family.unit, memory_format)
        problem = prepared.check()
    except Exception as error:  # noqa: BLE001 -- any failure refuses the op, with its reason
        problem = f"raised {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    if problem is not None:
        results.refused.append({**base, "reason": problem})
        reporter.say(f"REFUSED {case.op} ({case.shape}), not timed: {problem}")
        return

    # Native variants: on CUDA float32 convolutions, cuDNN with TF32 off and on (torch's
    # default); elsewhere the flag does not apply.
    tf32_variants = [False, True] if (device.type == "cuda" and dtype == torch.float32
                                      and family.native_conv) else [None]
    peak = peak_for(results.peaks, options.dtype, family.unit)
    for pass_ in family.passes:
        runners = [prepared.runners("cnnops", pass_)]
        for tf32 in tf32_variants:
            native = prepared.runners("torch", pass_)
            runners.append(native if tf32 is None else _with_tf32(native, tf32))
        try:
            times = time_interleaved(runners, min_run_time, device,
                                     warmup=2 if device.type == "cuda" else 1)
        except Exception as error:  # noqa: BLE001
            results.refused.append({**base, "pass": pass_, "reason": f"timing raised {error!r}"})
            reporter.say(f"FAILED {case.op} {pass_}: {error!r}")
            continue
        work = prepared.forward_work * (1 if pass_ == "forward" else family.backward_factor)
        for tf32, torch_ms in zip(tf32_variants, times[1:]):
            rate = work / times[0] / 1e6  # GFLOP/s or GB/s from work per millisecond
            results.rows.append({
                **base, "pass": pass_, "cnnops_ms": times[0], "torch_ms": torch_ms,
                "speedup": torch_ms / times[0], "rate": rate, "rate_unit": family.unit,
                "peak_fraction": rate / peak if peak else None, "peak": peak,
                "torch_rate": work / torch_ms / 1e6, "torch_tf32": tf32,
            })


def _with_tf32(fn: Callable[[], object], allow: bool) -> Callable[[], object]:
    def run() -> object:
        torch.backends.cudnn.allow_tf32 = allow
        return fn()
    return run


# --------------------------------------------------------------------------------------
# Command line (`cnnops bench`).


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--ops", type=lambda s: [x for x in s.split(",") if x], default=None,
                        help=f"comma-separated op families (default: all that exist): "
                             f"{', '.join(FAMILY_NAMES)}")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--quick", action="store_true",
                        help="one shape per op family (under a minute on 2 cores)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny shapes: a smoke test of the harness; the timings mean nothing")
    parser.add_argument("--channels-last", action="store_true",
                        help="every 4-D operand (inputs, weights, gradients; the e2e and "
                             "fused nets' parameters) in channels_last, for cnnops and torch alike")
    parser.add_argument("--min-run-time", type=float, default=None, metavar="S",
                        help="seconds of timing per implementation and pass "
                             "(default 0.25; 0.1 with --quick)")
    parser.add_argument("--allocator-defaults", action="store_true",
                        help="leave glibc's allocator as it is (by default it keeps freed "
                             "memory, so that no timing pays for page faults)")
    parser.add_argument("--json", metavar="PATH", help="write machine, peaks and rows as JSON")
    parser.add_argument("--csv", metavar="PATH", help="write the rows as CSV")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG bar chart of speedups")
    parser.add_argument("--list", action="store_true", help="list the op families and ops, then exit")
    # Test hook: make the named op's cnnops result wrong, to see the harness refuse it.
    parser.add_argument("--inject-wrong", action="append", default=[], help=argparse.SUPPRESS)


def list_ops(args: argparse.Namespace) -> None:
    for family in FAMILIES:
        state = "" if family.available() else f"  (not in this build: needs cnnops.{family.requires})"
        print(f"{family.name} [{family.unit}]{state}")
        for case in family.cases(args.tiny):
            quick = "  (--quick)" if case.op == family.quick else ""
            print(f"  {case.op:28s} {case.shape}{quick}")


def peak_rss_mib() -> float | None:
    """This process's peak resident memory so far, in MiB (None where the OS does not say)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024  # bytes / KiB


def main_from_args(args: argparse.Namespace) -> int:
    if args.list:
        list_ops(args)
        return 0
    options = Options(device=args.device, ops=args.ops, dtype=args.dtype, threads=args.threads,
                      quick=args.quick, tiny=args.tiny, channels_last=args.channels_last,
                      min_run_time=args.min_run_time, allocator_defaults=args.allocator_defaults,
                      json=args.json, csv=args.csv, plot=args.plot, inject_wrong=args.inject_wrong)
    start = time.perf_counter()
    try:
        results = run(options)
    except BenchError as error:
        print(f"cnnops bench: error: {error}", file=sys.stderr)
        return 2
    print_results(results)
    rss = peak_rss_mib()
    if rss is not None:  # recorded with the run: the issue of workspaces is memory, not time
        results.machine["peak_rss_mib"] = round(rss, 1)
    if options.json:
        write_json(results, options.json)
    if options.csv:
        write_csv(results, options.csv)
    if options.plot:
        write_plot(results, options.plot)
    print(f"{len(results.rows)} rows in {time.perf_counter() - start:.0f} s"
          + (f"; peak RSS {rss:.0f} MiB" if rss is not None else "")
          + "".join(f"; wrote {p}" for p in (options.json, options.csv) if p))
    if results.refused:
        print(f"{len(results.refused)} op(s) refused, not timed: a result that differs from "
              "torch, or an error (see REFUSED above)", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cnnops bench", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return main_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
