"""Backward is deterministic: the same gradients, bit for bit, run after run and whatever
torch.set_num_threads says.

The CPU kernels split their reductions by the problem's shape, never by the thread count
(csrc/cpu/conv2d.cpp's grad_weight sums a fixed number of column splits in split order; the
pooling and depthwise adjoints are gathers), and no CUDA kernel uses atomics (see the header
comments of csrc/cuda/*.cu), so torch.use_deterministic_algorithms(True) has nothing to
refuse and every operator runs under it.
"""


import pytest
import torch

import cnnops
from _helpers import num_threads


def conv_case(input_shape, weight_shape, groups, stride=1, padding=1, channels_last=False):
    def build(device):
        x = torch.randn(input_shape, device=device)
        w = torch.randn(weight_shape, device=device)
        b = torch.randn(weight_shape[0], device=device)
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        return (x, w, b), lambda x, w, b: cnnops.conv2d(x, w, b, stride, padding, 1, groups)
    return build


def pool_case(fn):
    def build(device):
        return (torch.randn(4, 6, 31, 29, device=device),), fn
    return build


def separable_case(device):
    tensors = (torch.randn(4, 8, 30, 30, device=device), torch.randn(16, 1, 3, 3, device=device),
               torch.randn(12, 16, 1, 1, device=device), torch.randn(16, device=device),
               torch.randn(12, device=device))
    return tensors, lambda x, dw, pw, dwb, pwb: cnnops.depthwise_separable_conv2d(
        x, dw, pw, dwb, pwb, stride=1, padding=1)


# Shapes big enough that grad_weight's reduction over N*P*Q (>= 2048 columns) is cut into
# several splits, and with overlapping pooling windows, where a scatter could collide.
CASES = {
    "conv2d": conv_case((4, 8, 33, 31), (16, 8, 3, 3), 1),
    "conv2d_strided_channels_last": conv_case((4, 8, 33, 31), (16, 8, 5, 3), 1, stride=2,
                                              channels_last=True),
    # Channels enough for the automatic choice to run Winograd (forward and grad_input).
    "conv2d_winograd": conv_case((2, 32, 17, 15), (48, 32, 3, 3), 1),
    # Short reductions (CgRS <= 32), whose grad_weight runs the direct kernel: a 3-channel
    # first layer, and one channel to 32 (SimpleCNN's first layer, not the depthwise kernels).
    "conv2d_first_layer": conv_case((8, 3, 40, 37), (16, 3, 3, 3), 1),
    "conv2d_one_to_many": conv_case((8, 1, 28, 28), (32, 1, 3, 3), 1),
    # A small plane (SimpleCNN's third layer): the flat direct kernels, grad_weight summed
    # over units of images into partial copies.
    "conv2d_small_plane": conv_case((24, 40, 7, 7), (48, 40, 3, 3), 1),
    "conv2d_grouped": conv_case((4, 8, 33, 31), (12, 4, 3, 3), 2),
    "conv2d_depthwise": conv_case((4, 8, 33, 31), (16, 1, 3, 3), 8),
    # channels_last depthwise grad_weight: a small plane gathered in blocks of channels (two
    # blocks of 64, the second partial; 6 images in 8 ranges of rows, some across images),
    # and a plane too big for that, read in place
    "conv2d_depthwise_channels_last": conv_case((6, 72, 9, 9), (72, 1, 3, 3), 72,
                                                channels_last=True),
    "conv2d_depthwise_channels_last_wide": conv_case((2, 8, 72, 72), (8, 1, 3, 3), 8,
                                                     channels_last=True),
    "conv2d_1x1": conv_case((4, 24, 20, 20), (40, 24, 1, 1), 1, padding=0),
    "max_pool2d": pool_case(lambda x: cnnops.max_pool2d(x, 3, 1, 1)),
    "avg_pool2d": pool_case(lambda x: cnnops.avg_pool2d(x, 5, 2, 2, count_include_pad=False)),
    "adaptive_avg_pool2d": pool_case(lambda x: cnnops.adaptive_avg_pool2d(x, (7, 5))),
    "adaptive_max_pool2d": pool_case(lambda x: cnnops.adaptive_max_pool2d(x, (7, 5))),
    "separable": separable_case,
}


def gradients(build, device, seed=0):
    torch.manual_seed(seed)
    tensors, fn = build(device)
    tensors = [t.requires_grad_() for t in tensors]
    out = fn(*tensors)
    grad = torch.randn_like(out)
    return [out.detach(), *torch.autograd.grad(out, tensors, grad)]


def assert_bitwise_equal(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b), f"differs in {(a != b).sum().item()} of {a.numel()} elements"


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_cpu_backward_is_bitwise_repeatable_and_thread_count_independent(case):
    build = CASES[case]
    with num_threads(2):
        reference = gradients(build, "cpu")
        assert_bitwise_equal(reference, gradients(build, "cpu"))
    with num_threads(1):
        assert_bitwise_equal(reference, gradients(build, "cpu"))


def test_cpu_conv2d_grad_weight_with_many_threads_is_unchanged():
    # More threads than this machine may have cores: grad_weight's splits must not follow them.
    build = conv_case((8, 8, 40, 40), (16, 8, 3, 3), 1)
    with num_threads(1):
        reference = gradients(build, "cpu")
    with num_threads(7):
        assert_bitwise_equal(reference, gradients(build, "cpu"))


@pytest.fixture
def deterministic_algorithms():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_cpu_operators_run_under_use_deterministic_algorithms(case, deterministic_algorithms):
    reference = gradients(CASES[case], "cpu")
    assert_bitwise_equal(reference, gradients(CASES[case], "cpu"))


@pytest.mark.cuda
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_cuda_backward_is_bitwise_repeatable(case, deterministic_algorithms):
    # No atomics anywhere: under use_deterministic_algorithms(True) nothing raises, and two
    # runs agree bit for bit.
    reference = gradients(CASES[case], "cuda")
    assert_bitwise_equal(reference, gradients(CASES[case], "cuda"))
