"""No leaks: hundreds of forward/backward steps, or of calls that raise, leave the process's
resident memory (CPU) or the caching allocator's allocated bytes (CUDA) where they were.

Each step allocates operands and results of 64 KB or more, so a step that kept any of them
alive would grow the process by 13 MB or more over the loop; the bound allows the
allocator's own slack (glibc's arenas, torch's thread pool), measured at under 1 MB here.
"""

import gc
import os

import pytest
import torch

import cnnops

PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1 << 20
STEPS = 200
ALLOWED_GROWTH = 6 * MB  # against >= 13 MB for a leak of one result per step


def resident_bytes() -> int:
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def training_step(device="cpu"):
    """Forward and backward through every op family; returns nothing that outlives it."""
    x = torch.randn(2, 8, 32, 32, device=device, requires_grad=True)  # 64 KB
    w = torch.randn(8, 8, 3, 3, device=device, requires_grad=True)
    dw = torch.randn(8, 1, 3, 3, device=device, requires_grad=True)
    pw = torch.randn(12, 8, 1, 1, device=device, requires_grad=True)
    y = cnnops.conv2d(x, w, padding=1)
    y = cnnops.conv2d(y, dw, padding=1, groups=8).relu()
    y = cnnops.max_pool2d(y, 3, 1, 1) + cnnops.avg_pool2d(y, 3, 1, 1)
    y = cnnops.depthwise_separable_conv2d(y, dw, pw, padding=1)
    y = cnnops.adaptive_avg_pool2d(y, 5) + cnnops.adaptive_max_pool2d(y, 5)
    y.square().sum().backward()


def failing_calls(device="cpu"):
    """Calls that fail: on argument checks, and after the forward kernel has run and
    allocated its result (conv2d_bias_relu refuses to record gradients only afterwards)."""
    x = torch.randn(8, 16, 32, 32, device=device, requires_grad=True)  # 512 KB, cheap here
    w = torch.randn(16, 16, 3, 3, device=device)
    calls = [
        lambda: cnnops.functional.conv2d_bias_relu(x, w, padding=1),    # fails after the kernel
        lambda: cnnops.conv2d(x, w[:, :8]),                            # channel mismatch
        lambda: cnnops.conv2d(x, w.double()),                          # dtype mismatch
        lambda: cnnops.max_pool2d(x, 40),                              # kernel larger than input
        lambda: cnnops.avg_pool2d(x, 3, padding=2),                    # padding > kernel / 2
        lambda: cnnops.depthwise_separable_conv2d(x, w[:, :1], w[:8]),  # pointwise shape
        lambda: torch.ops.cnnops.conv2d_grad_weight(x, x, [16, 16, 5, 5], [1, 1],
                                                    [1, 1, 1, 1], [1, 1], 1),  # grad shape
    ]
    for call in calls:
        with pytest.raises((RuntimeError, ValueError, TypeError)):
            call()


def assert_no_growth(step, measure, allowed):
    # One thread: a tiny problem on a busy machine costs ten times as much with a thread
    # pool's barriers, and what is measured is memory, not the parallel split.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _assert_no_growth(step, measure, allowed)
    finally:
        torch.set_num_threads(previous)


def _assert_no_growth(step, measure, allowed):
    for _ in range(30):  # warm-up: allocator pools, thread pool, first-call caches
        step()
    before = measure()
    for _ in range(STEPS):
        step()
    growth = measure() - before
    print(f"growth over {STEPS} steps: {growth / MB:.2f} MB")
    assert growth <= allowed, f"grew by {growth / MB:.1f} MB over {STEPS} steps"


def test_cpu_training_steps_do_not_grow_the_process():
    assert_no_growth(training_step, resident_bytes, ALLOWED_GROWTH)


def test_cpu_failing_calls_do_not_grow_the_process():
    assert_no_growth(failing_calls, resident_bytes, ALLOWED_GROWTH)


@pytest.mark.cuda
def test_cuda_training_steps_and_failing_calls_free_everything():
    def allocated():
        gc.collect()
        torch.cuda.synchronize()
        return torch.cuda.memory_allocated()

    # The caching allocator counts live tensors exactly: no slack is needed.
    assert_no_growth(lambda: training_step("cuda"), allocated, 0)
    assert_no_growth(lambda: failing_calls("cuda"), allocated, 0)
