"""pytest-benchmark suites over the reference shapes, cnnops beside native PyTorch.

    pytest benchmarks/ --benchmark-only [--benchmark-group-by=group] [-k conv2d.vgg16c]

Each op, pass and device is one group holding two benchmarks, `cnnops` and `torch`, so the
report shows them side by side. The cases are those of `cnnops bench` (cnnops.bench_cases: the
same shapes, operands and correctness check), so the two never disagree on what is timed;
an op whose result is wrong fails instead of being timed. Families missing from the build
are skipped. Not part of the CI test command: timings live here, never in tests/.
"""

from __future__ import annotations

import functools

import pytest
import torch

from cnnops import bench_cases
from cnnops._ops import _C

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and _C.with_cuda() else [])
CASES = bench_cases.select_cases(bench_cases.FAMILIES, quick=False, tiny=False)


@functools.lru_cache(maxsize=4)  # prepared cases hold their operands (and models): keep few
def prepared(op: str, device: str) -> tuple[bench_cases.Prepared, str | None]:
    family, case = next((f, c) for f, c in CASES if c.op == op)
    ready = case.prepare(torch.device(device), torch.float32, family.unit)
    return ready, ready.check()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ["cnnops", "torch"])
@pytest.mark.parametrize("pass_", bench_cases.PASSES)
@pytest.mark.parametrize("family, case", CASES, ids=[case.op for _, case in CASES])
def test_op(benchmark, family, case, pass_, impl, device):
    if not family.available():
        pytest.skip(f"cnnops has no {family.requires} yet")
    ready, problem = prepared(case.op, device)
    if problem is not None:
        pytest.fail(f"{case.op}: cnnops' result is wrong, not timed: {problem}")
    fn = ready.runners(impl, pass_)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
        inner = fn

        def fn():
            inner()
            torch.cuda.synchronize()

    work = ready.forward_work * (1 if pass_ == "forward" else family.backward_factor)
    benchmark.group = f"{case.op} {pass_} {device}"
    benchmark.extra_info.update(shape=case.shape, work=work, unit=family.unit)
    fn()  # warm-up: allocator, caches, cuDNN autotuning
    benchmark(fn)
