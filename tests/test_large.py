"""Tensors of more than 2**31 elements through every op family, forward and backward, on
CUDA: offsets past 2**31 must be computed in 64 bits (DESIGN.md section 3).

Opt-in (`-m large` or CNNOPS_LARGE=1) and CUDA-only: each case holds several float32
tensors of 8.6 GB; meant for a GPU machine with 80 GB or more. Two layouts per family where
they differ: many planes whose total passes 2**31 (plane offsets overflow), and for pooling
one plane of more than 2**31 elements (in-plane indices overflow too).
"""

import gc

import pytest
import torch
import torch.nn.functional as F

import cnnops

pytestmark = [pytest.mark.large, pytest.mark.cuda]

BIG = 2**31
# (N, C, H, W): two planes of 1.07e9 each (2.15e9 in all); one plane of 2.15e9.
MANY_PLANES = (1, 2, 32768, 32800)
ONE_PLANE = (1, 1, 46341, 46341)


@pytest.fixture(autouse=True)
def _free_memory():
    yield
    gc.collect()
    torch.cuda.empty_cache()


def big_input(shape):
    assert torch.Size(shape).numel() > BIG
    return torch.rand(shape, device="cuda")  # positive: sums of it are well conditioned


def check_pool(fn, shape, exact):
    x = big_input(shape).requires_grad_()
    out, ref = fn(cnnops, x), fn(F, x)
    tol = dict(rtol=0, atol=0) if exact else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, ref, **tol)
    # The last elements are the ones whose offsets pass 2**31.
    torch.testing.assert_close(out[..., -3:, -3:], ref[..., -3:, -3:], **tol)
    grad = torch.ones_like(out)
    (g,) = torch.autograd.grad(out, x, grad)
    del out
    (r,) = torch.autograd.grad(ref, x, grad)
    torch.testing.assert_close(g, r, **tol)


@pytest.mark.parametrize("shape", [MANY_PLANES, ONE_PLANE], ids=["many_planes", "one_plane"])
def test_max_pool2d_past_2_31_elements(shape):
    check_pool(lambda f, x: f.max_pool2d(x, 3, 2, 1), shape, exact=True)


@pytest.mark.parametrize("shape", [MANY_PLANES, ONE_PLANE], ids=["many_planes", "one_plane"])
def test_avg_pool2d_past_2_31_elements(shape):
    check_pool(lambda f, x: f.avg_pool2d(x, 3, 2, 1), shape, exact=False)


def check_conv(shape, weight_shape, groups):
    x = big_input(shape).requires_grad_()
    w = torch.rand(weight_shape, device="cuda", requires_grad=True)
    out = cnnops.conv2d(x, w, padding=1, groups=groups)
    ref = F.conv2d(x, w, padding=1, groups=groups)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out[..., -3:, -3:], ref[..., -3:, -3:], rtol=1e-4, atol=1e-4)
    grad = torch.ones_like(out)
    grads = torch.autograd.grad(out, (x, w), grad)
    del out
    refs = torch.autograd.grad(ref, (x, w), grad)
    # grad_weight sums 1e9 positive products per entry, in a different order from cuDNN's.
    torch.testing.assert_close(grads[0], refs[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grads[1], refs[1], rtol=1e-3, atol=0)


def test_conv2d_depthwise_past_2_31_elements():
    check_conv(MANY_PLANES, (2, 1, 3, 3), groups=2)


def test_conv2d_past_2_31_elements():
    check_conv((1, 4, 23200, 23200), (4, 4, 3, 3), groups=1)
