"""Threads: the operators are safe to call from several Python threads at once, and the CPU
kernels parallelise with at::parallel_for, so torch.set_num_threads governs them.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import cnnops
from _helpers import num_threads


def forward_backward(tensors, fn):
    leaves = [t.detach().requires_grad_() for t in tensors]
    out = fn(*leaves)
    return [out.detach(), *torch.autograd.grad(out, leaves, torch.ones_like(out))]


def jobs(device="cpu"):
    """(operands, function) pairs covering every op family, each with its own operands."""
    def r(*shape):
        return torch.randn(*shape, device=device)
    cases = []
    for i in range(3):  # several jobs of each family, so that like kernels overlap too
        cases += [
            ((r(3, 6, 17 + i, 13), r(8, 6, 3, 3), r(8)),
             lambda x, w, b: cnnops.conv2d(x, w, b, padding=1)),
            ((r(3, 6, 17, 13 + i), r(6, 1, 3, 3)),
             lambda x, w: cnnops.conv2d(x, w, stride=2, padding=1, groups=6)),
            ((r(3, 6, 16, 15 + i), r(10, 3, 3, 1)), lambda x, w: cnnops.conv2d(x, w, groups=2)),
            ((r(2, 4, 15 + i, 15), r(8, 1, 3, 3), r(5, 8, 1, 1)),
             lambda x, dw, pw: cnnops.depthwise_separable_conv2d(x, dw, pw, padding=1)),
            ((r(3, 5, 19 + i, 17),), lambda x: cnnops.max_pool2d(x, 3, 2, 1)),
            ((r(3, 5, 19, 17 + i),), lambda x: cnnops.avg_pool2d(x, 3, 1, 1)),
            ((r(3, 5, 19 + i, 18),), lambda x: cnnops.adaptive_avg_pool2d(x, (5, 4))),
            ((r(3, 5, 19, 18 + i),), lambda x: cnnops.adaptive_max_pool2d(x, (5, 4))),
        ]
    return cases


def run_concurrently(cases, workers=4, rounds=3):
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(forward_backward, *case) for case in cases * rounds]
        return [f.result() for f in futures]


def assert_same(results, references):
    for got, ref in zip(results, references):
        for a, b in zip(got, ref):
            assert torch.equal(a, b)


@pytest.mark.parametrize("threads", [1, 2])
def test_cpu_concurrent_calls_match_sequential_ones(threads):
    cases = jobs()
    with num_threads(threads):
        references = [forward_backward(*case) for case in cases]
        results = run_concurrently(cases)
    assert_same(results, references * 3)


def test_cpu_result_does_not_depend_on_the_thread_count():
    cases = jobs()
    with num_threads(1):
        one = [forward_backward(*case) for case in cases]
    with num_threads(2):
        assert_same([forward_backward(*case) for case in cases], one)


def main_thread_share_of_cpu_time(fn) -> float:
    """The fraction of this process's CPU time spent on the calling thread while fn runs."""
    process, thread = time.process_time(), time.thread_time()
    fn()
    return (time.thread_time() - thread) / (time.process_time() - process)


def test_cpu_set_num_threads_1_keeps_the_work_on_the_calling_thread():
    # Not a timing assertion: it compares CPU time (not wall time) spent on the calling
    # thread with that of the whole process, i.e. which threads did the arithmetic, whatever
    # the machine's speed or load. With one thread at::parallel_for runs inline, so nearly
    # all of it is the caller's; with two, a worker computes half of the range (the control
    # shows the measure can tell the difference). It proves set_num_threads reaches our
    # kernels, not anything about the speed-up. One large reference-kernel conv2d: one
    # parallel region, so the pool's spin-waits at its barrier are a small fraction.
    x, w = torch.randn(4, 16, 48, 48), torch.randn(32, 16, 3, 3)

    def work():
        with cnnops.kernel_version("conv2d", 1):
            cnnops.conv2d(x, w, padding=1)

    work()  # warm-up: the thread pool exists before anything is measured
    with num_threads(1):
        assert main_thread_share_of_cpu_time(work) > 0.85  # measured: 0.96
    with num_threads(2):
        assert main_thread_share_of_cpu_time(work) < 0.7  # measured: 0.50


@pytest.mark.cuda
def test_cuda_concurrent_calls_match_sequential_ones():
    cases = jobs("cuda")
    references = [forward_backward(*case) for case in cases]
    torch.cuda.synchronize()
    results = run_concurrently(cases)
    torch.cuda.synchronize()
    assert_same(results, references * 3)
