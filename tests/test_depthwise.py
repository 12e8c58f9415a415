"""Depthwise convolution (cnnops.conv2d with groups == in_channels, which runs the depthwise
kernels) against torch.nn.functional.conv2d: forward, gradients, memory formats, both kernel
versions, every CPU instruction set, determinism, gradcheck and opcheck.

The reference is F.conv2d in float64 on upcast copies of the operands, so the error measured
is the kernel's own; tolerances come from the dtype: atol + rtol * |ref|, atol growing as
sqrt(reduction length).
"""

import math
import os
import random
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

import cnnops
from _helpers import num_threads

# torch's own F.conv2d (the reference) warns about even kernels with padding='same'
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64")]
VERSIONS = [pytest.param(1, id="v1_reference"), pytest.param(2, id="v2_fast")]
LAYOUTS = ["contiguous", "channels_last", "sliced"]

# dtype: (rtol, atol per sqrt(reduction length))
TOLERANCES = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (5e-3, 2e-3),
    torch.bfloat16: (3e-2, 1.6e-2),
}


@dataclass(frozen=True)
class DwCase:
    batch: int
    channels: int
    mult: int  # channel multiplier: out_channels = channels * mult
    hw: tuple[int, int]
    kernel: tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] | str = 0
    dilation: int | tuple[int, int] = 1
    bias: bool = True

    @property
    def input_shape(self):
        return (self.batch, self.channels, *self.hw)

    @property
    def weight_shape(self):
        return (self.channels * self.mult, 1, *self.kernel)

    @property
    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.channels)


def case(name, *args, **kwargs):
    return pytest.param(DwCase(*args, **kwargs), id=name)


# Awkward on purpose: channels of 1, odd and multiples of 8, multipliers, H or W of 1, sizes
# that are no multiple of a vector or tile, kernels of 1 to 7 and non-square, every stride and
# dilation the flattened-plane kernels treat as separate phases.
CASES = [
    case("c1_k3", 2, 1, 1, (7, 9), (3, 3), padding=1),
    case("c1_mult3_stride2", 1, 1, 3, (5, 6), (3, 3), stride=2, padding=1),
    case("c7_k5_stride2", 2, 7, 1, (13, 17), (5, 5), stride=2, padding=2),
    case("c8_k3_33x35", 1, 8, 1, (33, 35), (3, 3), padding=1, bias=False),
    case("c16_k3_stride2_14x14", 2, 16, 1, (14, 14), (3, 3), stride=2, padding=1),
    case("c5_mult2_k3x5_stride2x1", 2, 5, 2, (9, 11), (3, 5), stride=(2, 1), padding=(1, 2)),
    case("c3_dilation2", 2, 3, 1, (13, 17), (3, 3), padding=2, dilation=2),
    case("c6_dilation2x3_stride2", 1, 6, 1, (13, 17), (3, 2), stride=2, padding=(1, 0),
         dilation=(2, 3)),
    case("c9_k1_stride3", 2, 9, 1, (7, 9), (1, 1), stride=3),
    case("c3_k7_pad3", 1, 3, 1, (13, 17), (7, 7), padding=3),
    case("c4_k2x3_same", 2, 4, 1, (7, 9), (2, 3), padding="same"),
    case("c4_k4_same_dilation2", 1, 4, 2, (9, 8), (4, 4), padding="same", dilation=2),
    case("h1", 2, 3, 1, (1, 9), (1, 3), padding=(0, 1)),
    case("w1_stride2", 2, 5, 1, (9, 1), (3, 1), stride=2, padding=1),
    case("image_1x1_k3_pad1", 2, 7, 1, (1, 1), (3, 3), padding=1),
    case("padding_wider_than_kernel", 1, 2, 1, (5, 4), (2, 3), padding=(4, 3)),
    case("kernel_equals_input", 3, 4, 1, (5, 5), (5, 5)),
    case("c24_mult2_stride2_odd", 2, 24, 2, (15, 13), (3, 3), stride=2, padding=1),
    case("c3_mult4_k5_stride3", 2, 3, 4, (16, 19), (5, 5), stride=3, padding=2),
    case("valid", 2, 6, 1, (8, 7), (3, 2), padding="valid"),
    case("batch0", 0, 3, 1, (7, 9), (3, 3), padding=1),
    # channels_last with 70 channels: the channels-last loops' blocks of four vectors and a
    # partial vector, at stride 1 and 2
    case("c70_k3", 2, 70, 1, (6, 7), (3, 3), padding=1),
    case("c70_k3_stride2_dilation2", 1, 70, 1, (9, 8), (3, 3), stride=2, padding=2, dilation=2),
    # up to two vectors and nine taps: the weights held in registers (20: a partial second
    # vector on AVX-512, more than two vectors on AVX2)
    case("c20_k3", 2, 20, 1, (6, 7), (3, 3), padding=1),
    case("c32_k3_stride2", 1, 32, 1, (9, 8), (3, 3), stride=2, padding=1),
    # channels_last grad_weight: a plane too big to be gathered in one band (read in place),
    # its pairs of rows whole, edges included (one column of padding each side); with a
    # partial vector of channels; and with two columns of padding, whose edges are summed
    # apart from the pairs' interior runs
    case("c8_k3_72x72", 1, 8, 1, (72, 72), (3, 3), padding=1),
    case("c13_k3_64x64", 1, 13, 1, (64, 64), (3, 3), padding=1),
    case("c8_k3_72x72_padding2", 1, 8, 1, (72, 72), (3, 3), padding=2),
]


def make_tensor(shape, layout, dtype, device):
    def randn(*size):
        return torch.randn(*size, dtype=torch.float32).to(dtype=dtype, device=device)

    if len(shape) != 4 or layout == "contiguous":
        return randn(*shape)
    n, c, h, w = shape
    if layout == "channels_last":
        return randn(n, c, h, w).contiguous(memory_format=torch.channels_last)
    if layout == "sliced":  # a view with a width stride of 2
        return randn(n, c, h, 2 * w)[..., ::2]
    raise AssertionError(layout)


def assert_close(actual, expected, dtype, reduction, what):
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    rtol, atol_unit = TOLERANCES[dtype]
    torch.testing.assert_close(actual.to(expected.dtype), expected, rtol=rtol,
                               atol=atol_unit * math.sqrt(max(reduction, 1)),
                               msg=lambda m: f"{what}: {m}")


def assert_same_memory_format(actual, expected, what):
    if expected.numel() == 0:  # no strides to speak of (cnnops.conv2d makes these contiguous)
        return
    for memory_format in (torch.contiguous_format, torch.channels_last):
        assert (actual.is_contiguous(memory_format=memory_format)
                == expected.is_contiguous(memory_format=memory_format)), (
            f"{what}: strides {actual.stride()}, torch's {expected.stride()}")


def check_against_torch(c: DwCase, dtype, device, version, layout="contiguous",
                        weight_layout="contiguous"):
    """Forward and the three gradients of cnnops.conv2d against F.conv2d."""
    x = make_tensor(c.input_shape, layout, dtype, device).requires_grad_()
    w = make_tensor(c.weight_shape, weight_layout, dtype, device).requires_grad_()
    b = make_tensor((c.weight_shape[0],), "contiguous", dtype, device).requires_grad_() if c.bias else None
    operands = [t for t in (x, w, b) if t is not None]
    native = F.conv2d(x, w, b, **c.kwargs)
    grad_output = make_tensor(tuple(native.shape), layout, dtype, device)
    native_grads = torch.autograd.grad(native, operands, grad_output)
    if device == "cuda" and dtype == torch.float64:
        # torch's CUDA depthwise kernel for float64 (not cuDNN's) writes NCHW whatever the
        # input's layout (seen on torch 2.11); cnnops keeps the input's layout, as torch does
        # everywhere else, so here the layouts are compared with torch's on the CPU.
        on_cpu = [t.detach().cpu().requires_grad_() for t in operands]
        native = F.conv2d(*on_cpu[:2], on_cpu[2] if c.bias else None, **c.kwargs)
        native_grads = torch.autograd.grad(native, on_cpu, grad_output.cpu())

    exact = [t.detach().double().requires_grad_() for t in operands]
    ref = F.conv2d(exact[0], exact[1], exact[2] if c.bias else None, **c.kwargs)
    ref_grads = torch.autograd.grad(ref, exact, grad_output.double())

    with cnnops.kernel_version("depthwise", version):
        out = cnnops.conv2d(x, w, b, **c.kwargs)
        grads = torch.autograd.grad(out, operands, grad_output)

    kh, kw = c.kernel
    pixels = c.batch * native.shape[2] * native.shape[3]
    lengths = {"output": kh * kw, "grad_input": c.mult * kh * kw, "grad_weight": pixels,
               "grad_bias": pixels}
    assert_close(out, ref.detach(), dtype, lengths["output"], "output")
    assert_same_memory_format(out, native, "output")
    for name, grad, ref_grad, native_grad in zip(("grad_input", "grad_weight", "grad_bias"),
                                                 grads, ref_grads, native_grads):
        assert_close(grad, ref_grad, dtype, lengths[name], name)
        # conv2d_grad_input sees grad_output, not the input: its layout decides, and it can
        # only when it is not both contiguous and channels_last (1x1 outputs are both)
        ambiguous = all(grad_output.is_contiguous(memory_format=f)
                        for f in (torch.contiguous_format, torch.channels_last))
        if name == "grad_input" and not ambiguous:
            assert_same_memory_format(grad, native_grad, name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("c", CASES)
def test_depthwise_matches_torch(c, version, dtype, layout, device):
    check_against_torch(c, dtype, device, version, layout)


# The small-plane kernels (NCHW, an output row in one vector: Q <= 8 floats with AVX2, 16
# with AVX-512; AVX2 takes rows of up to 16 in two vectors at stride_w 1; stride_w 2 takes
# input rows of up to two vectors): widths at and around those
# bounds, paddings wider than the kernel (grad_input then runs them with a negative padding),
# dilation, multipliers, 1-D kernels, and shapes one past the bounds, which take the strips.
SMALL_PLANE_CASES = [
    case("q7", 2, 5, 1, (7, 7), (3, 3), padding=1),
    case("q8", 1, 4, 1, (6, 8), (3, 3), padding=1),
    case("q9", 1, 4, 1, (5, 9), (3, 3), padding=1),
    case("q16", 1, 3, 1, (4, 16), (3, 3), padding=1),
    case("q17", 1, 3, 1, (4, 17), (3, 3), padding=1),
    case("q14_stride2_w28", 2, 4, 1, (9, 28), (3, 3), stride=2, padding=1),
    case("stride2_w15", 1, 3, 1, (7, 15), (3, 3), stride=2, padding=1),
    case("stride2_w16", 1, 3, 1, (7, 16), (3, 3), stride=2, padding=1),
    case("stride2_w17", 1, 3, 1, (7, 17), (3, 3), stride=2, padding=1),
    case("stride2_w32", 1, 3, 1, (5, 32), (3, 3), stride=2, padding=1),
    case("stride2_w33", 1, 3, 1, (5, 33), (3, 3), stride=2, padding=1),
    case("stride2_pad0_unread_column", 2, 3, 1, (6, 10), (3, 3), stride=2),
    case("pad3_k3", 2, 3, 1, (5, 6), (3, 3), padding=3),
    case("pad4_k2x3_stride2", 1, 3, 1, (6, 7), (2, 3), stride=2, padding=4),
    case("dilation2_pad1", 1, 4, 1, (9, 7), (3, 3), padding=1, dilation=2),
    case("dilation2x1_stride2", 1, 2, 1, (9, 12), (3, 3), stride=2, padding=(2, 1),
         dilation=(2, 1)),
    case("mult2", 2, 3, 2, (7, 7), (3, 3), padding=1),
    case("mult3_stride2", 1, 2, 3, (8, 13), (3, 3), stride=2, padding=1),
    case("k1x5", 1, 4, 1, (6, 9), (1, 5), padding=(0, 2)),
    case("k5x1_stride2x1", 1, 4, 1, (9, 6), (5, 1), stride=(2, 1), padding=(2, 0)),
    case("k7_pad3", 1, 2, 1, (9, 10), (7, 7), padding=3),
    case("stride3_rows", 1, 2, 1, (11, 8), (3, 3), stride=(3, 1), padding=1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", SMALL_PLANE_CASES)
def test_small_plane_kernels_match_torch(c, dtype):
    check_against_torch(c, dtype, "cpu", 2)


def test_small_planes_ignore_columns_no_output_reads():
    # 3x3 stride 2 without padding over 10 columns reads columns 0-8: a vector lane past the
    # last output would pick column 9, and an inf there would turn the weight gradient's
    # 0 * inf into NaN
    x = torch.randn(2, 3, 6, 10)
    x[..., 9] = float("inf")
    x.requires_grad_()
    w = torch.randn(3, 1, 3, 3, requires_grad=True)
    out = cnnops.conv2d(x, w, None, 2, 0, 1, 3)
    grad_x, grad_w = torch.autograd.grad(out, (x, w), torch.ones_like(out))
    expected = torch.autograd.grad(F.conv2d(x, w, None, 2, 0, 1, 3), w, torch.ones_like(out))[0]
    assert out.isfinite().all() and grad_x.isfinite().all()
    torch.testing.assert_close(grad_w, expected, rtol=1e-4, atol=1e-4)


def test_small_plane_bias_relu_keeps_nan():
    # the fused ReLU is max(x, 0) as torch.relu: NaN stays NaN
    x = torch.randn(1, 4, 7, 7)
    x[0, 1, 3, 3] = float("nan")
    w = torch.randn(4, 1, 3, 3)
    b = torch.randn(4)
    with torch.no_grad():
        ours = cnnops.functional.conv2d_bias_relu(x, w, b, 1, 1, 1, 4)
    expected = torch.relu(F.conv2d(x, w, b, 1, 1, 1, 4))
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert ours[0, 1, 2:5, 2:5].isnan().all()


# The 3x3 kernel-version-2 tests below: 3 input channels, groups 3, multiplier `mult`.


def _taps_3x3(mult, dtype):
    return torch.randn(3 * mult, 1, 3, 3, dtype=dtype), torch.randn(3 * mult, dtype=dtype)


def _tol_3x3(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)


def _skip_if_kernel_larger(hw, padding):
    pads = padding if isinstance(padding, tuple) else (padding, padding)
    if any(h + 2 * p < 3 for h, p in zip(hw, pads)):
        pytest.skip("kernel larger than the padded input")


def _forward_and_fused_match(x, w, b, stride, padding, tol):
    """cnnops' forward pass and its fused ReLU against torch (NaN kept); (ours, torch's)."""
    expected = F.conv2d(x, w, b, stride, padding, 1, 3)
    with cnnops.kernel_version("depthwise", 2), torch.no_grad():
        out = cnnops.conv2d(x, w, b, stride, padding, 1, 3)
        fused = cnnops.functional.conv2d_bias_relu(x, w, b, stride, padding, 1, 3)
    torch.testing.assert_close(out, expected, equal_nan=True, **tol)
    torch.testing.assert_close(fused, F.relu(expected), equal_nan=True, **tol)
    return out, expected


def _grads(x, w, b, stride, padding, wrt, grad_output):
    """The gradient of the convolution with respect to `wrt`: (cnnops', torch's)."""
    with cnnops.kernel_version("depthwise", 2):
        ours = torch.autograd.grad(cnnops.conv2d(x, w, b, stride, padding, 1, 3), wrt,
                                   grad_output)[0]
    theirs = torch.autograd.grad(F.conv2d(x, w, b, stride, padding, 1, 3), wrt, grad_output)[0]
    return ours, theirs


def _rows(hw, rows, dtype):
    """2 x 3 planes of hw, their rows contiguous or sliced out of wider ones."""
    x = torch.randn(2, 3, hw[0], hw[1] + (5 if rows == "sliced" else 0), dtype=dtype)
    return x[..., : hw[1]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw", [(24, 8), (25, 9), (26, 16), (27, 17), (29, 23), (30, 40)])
@pytest.mark.parametrize("mult", [1, 2])
@pytest.mark.parametrize("rows", ["contiguous", "sliced"])
def test_stride1_rows_read_in_place_match_torch(rows, mult, hw, dtype):
    # 3x3, stride 1, padding 1, 24 rows or more of a vector or more: rows 2 to P - 3 are read
    # from the input in place, the loads at both ends of a row taking the neighbouring rows'
    # last and first elements and masking them. An inf in column 0 or the last column must
    # reach only its own neighbours (past the mask it would make the row's far end inf or NaN).
    # grad_weight reads every row in place (grid_plane_dot), with the same masks, and the
    # last vector of a row also masking the columns the one before it took; row counts of
    # every remainder modulo its blocks of 4.
    w, b = _taps_3x3(mult, dtype)
    tol = _tol_3x3(dtype)
    # a weight's gradient sums up to 2 x 30 x 40 products: float32 rounds more than at 1e-5
    weight_tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else tol
    for column in (None, 0, -1):
        x = _rows(hw, rows, dtype)
        if column is not None:
            x[:, :, :, column] = float("inf")
        out, expected = _forward_and_fused_match(x, w, b, 1, 1, tol)
        if column is not None:  # the far half of every row stays finite
            far = out[..., hw[1] // 2 :] if column == 0 else out[..., : hw[1] // 2]
            assert far.isfinite().all()
        w.requires_grad_()
        ours, theirs = _grads(x, w, b, 1, 1, w, torch.randn_like(expected))
        w.requires_grad_(False)
        if column is not None:  # column 0 never meets tap column 2, the last never tap column 0
            s = 2 if column == 0 else 0
            ours, theirs = ours[..., s], theirs[..., s]
            assert ours.isfinite().all()
        torch.testing.assert_close(ours, theirs, **weight_tol)
    # grad_input at stride 1 is this correlation of grad_output with the flipped taps
    x.requires_grad_()
    torch.testing.assert_close(*_grads(x, w, b, 1, 1, x, torch.randn_like(expected)), **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw", [(1, 16), (4, 15), (5, 17), (28, 28), (13, 33)])
@pytest.mark.parametrize("channels, mult", [(1, 32), (3, 2)])
def test_multiplier_planes_match_torch(channels, mult, hw, dtype):
    # 3x3, stride 1, padding 1 with a channel multiplier on rows of a vector or more (SimpleCNN's
    # first layer, 1 -> 32): grad_input, grad_weight and conv2d_backward run plane by plane,
    # each grad_output plane copied into a zero-padded buffer (multiplier_planes; 15 columns
    # are under an AVX-512 vector of floats and go the other ways). torch's gradients, and
    # conv2d_backward's bitwise the operators'. An inf in the input's first or last column
    # reaches only the weight taps that read it.
    ops = torch.ops.cnnops
    w = torch.randn(channels * mult, 1, 3, 3, dtype=dtype)
    dy = torch.randn(2, channels * mult, *hw, dtype=dtype)
    args = ([1, 1], [1, 1, 1, 1], [1, 1], channels)
    # sums of up to 2 x 28 x 28 products (the weight and the bias) or 32 x 9 (the input)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else _tol_3x3(dtype)
    for column in (None, 0, -1):
        x = torch.randn(2, channels, *hw, dtype=dtype)
        if column is not None:
            x[..., column] = float("inf")
        with cnnops.kernel_version("depthwise", 2):
            grad_input, grad_weight, grad_bias = ops.conv2d_backward(dy, x, w, *args, True)
            same = dict(rtol=0, atol=0, equal_nan=True)  # bitwise, the inf's NaNs included
            torch.testing.assert_close(
                grad_input, ops.conv2d_grad_input(dy, w, list(x.shape), *args), **same)
            torch.testing.assert_close(
                grad_weight, ops.conv2d_grad_weight(dy, x, list(w.shape), *args), **same)
        leaves = [t.clone().requires_grad_() for t in (x, w, torch.zeros(w.shape[0], dtype=dtype))]
        expected = torch.autograd.grad(F.conv2d(*leaves, 1, 1, 1, channels), leaves, dy)
        torch.testing.assert_close(grad_input, expected[0], **tol)
        torch.testing.assert_close(grad_bias, expected[2], **tol)
        if column is not None:  # column 0 never meets tap column 2, the last never tap column 0
            s = 2 if column == 0 else 0
            grad_weight, expected = grad_weight[..., s], (None, expected[1][..., s])
            assert grad_weight.isfinite().all()
        torch.testing.assert_close(grad_weight, expected[1], **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (7, 7), (14, 14), (9, 31), (5, 40), (4, 151)])
@pytest.mark.parametrize("padding", [1, 0, 2, 3, (1, 0), (0, 1), (2, 1)])
@pytest.mark.parametrize("mult", [1, 2])
@pytest.mark.parametrize("rows", ["contiguous", "sliced"])
def test_stride2_planes_match_torch(rows, mult, padding, hw, dtype):
    # 3x3 at stride 2, NCHW rows of any width read in place: the forward pass splits each
    # input row into even and odd columns (lanes in a scrambled order, restored per output
    # vector), in groups of up to eight column blocks (width 151: two groups on AVX2), the last
    # block moved back; grad_input interleaves the columns back; grad_weight's blocks end past
    # Q. An inf in the first or last column reaches only its own outputs: past a mask it would
    # make the row's far end inf or NaN. Fused ReLU, sliced rows, multiplier 2 (forward and
    # grad_weight), grad_input against torch.
    _skip_if_kernel_larger(hw, padding)
    w, b = _taps_3x3(mult, dtype)
    tol = _tol_3x3(dtype)
    for column in (None, 0, -1):
        x = _rows(hw, rows, dtype)
        if column is not None:
            x[:, :, :, column] = float("inf")
        out, expected = _forward_and_fused_match(x, w, b, 2, padding, tol)
        if column is not None and expected.shape[-1] >= 4:  # the far half stays finite
            half = expected.shape[-1] // 2
            far = out[..., half + 1 :] if column == 0 else out[..., : half - 1]
            assert far.isfinite().all()
        # grad_weight: lanes past Q read zero from both operands (an inf there would make the
        # tap's sum NaN where torch's is finite)
        w_leaf = w.clone().requires_grad_()
        ours, theirs = _grads(x, w_leaf, b, 2, padding, w_leaf, torch.randn_like(expected))
        torch.testing.assert_close(ours, theirs, equal_nan=True, **tol)
    if mult == 1:
        grad_output = torch.randn_like(expected)
        if rows == "sliced":
            grad_output = torch.randn(*expected.shape[:-1], expected.shape[-1] + 3,
                                      dtype=dtype)[..., : expected.shape[-1]]
        x = x.detach().clone().normal_().requires_grad_()
        torch.testing.assert_close(*_grads(x, w, b, 2, padding, x, grad_output), **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw", [(1, 3), (3, 4), (7, 7), (9, 5), (6, 8), (14, 14), (11, 13)])
@pytest.mark.parametrize("padding", [0, 1, 2, (2, 0), (0, 1)])
@pytest.mark.parametrize("mult", [1, 2])
def test_stride1_small_planes_row_by_row_match_torch(mult, padding, hw, dtype):
    # 3x3 at stride 1 over rows of one vector: input rows in order, each added to the three
    # output rows that read it, rows stored whole where the next row overwrites the lanes past
    # Q. The forward pass, its fused ReLU (NaN kept) and grad_input (the same kernel) against
    # torch; grad_weight too, whose rows of two AVX2 vectors (14, 13 columns) run as two
    # planes of one vector, the right one shifted.
    _skip_if_kernel_larger(hw, padding)
    x = torch.randn(2, 3, *hw, dtype=dtype)
    x[1, 2, hw[0] // 2, hw[1] // 2] = float("nan")
    w, b = _taps_3x3(mult, dtype)
    tol = _tol_3x3(dtype)
    _, expected = _forward_and_fused_match(x, w, b, 1, padding, tol)
    x = torch.randn(2, 3, *hw, dtype=dtype, requires_grad=True)
    w.requires_grad_()
    grad_output = torch.randn_like(expected)
    torch.testing.assert_close(*_grads(x, w, b, 1, padding, x, grad_output), **tol)
    torch.testing.assert_close(*_grads(x, w, b, 1, padding, w, grad_output), **tol)


def random_case(seed):
    """A random geometry: channels 1, odd or a multiple of 8, multiplier 1-3, kernel 1-5 (maybe
    non-square), stride 1-3, dilation 1-2, and a padding that keeps the output non-empty."""
    rng = random.Random(seed)
    channels = rng.choice([1, rng.randrange(3, 30, 2), 8 * rng.randint(1, 4)])
    kernel = (rng.randint(1, 5), rng.randint(1, 5))
    dilation = (rng.randint(1, 2), rng.randint(1, 2))
    padding = tuple(rng.randint(0, (k - 1) * d) for k, d in zip(kernel, dilation))
    hw = tuple(max(rng.randint(1, 23), (k - 1) * d + 1 - 2 * p)
               for k, d, p in zip(kernel, dilation, padding))
    return DwCase(rng.randint(1, 3), channels, rng.randint(1, 3), hw, kernel,
                  (rng.randint(1, 3), rng.randint(1, 3)), padding, dilation, rng.random() < 0.5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("seed", range(12))
def test_random_geometries_match_torch(seed, version, dtype, device):
    c = random_case(seed)
    check_against_torch(c, dtype, device, version, LAYOUTS[seed % len(LAYOUTS)])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("weight_layout", ["channels_last", "sliced"])
def test_weight_layouts_match_torch(weight_layout, version, device):
    c = DwCase(2, 6, 2, (9, 11), (3, 3), stride=2, padding=1)
    check_against_torch(c, torch.float32, device, version, "contiguous", weight_layout)


@pytest.mark.parametrize("device", DEVICES)
def test_unbatched_input(device):
    x = torch.randn(5, 9, 11, device=device)
    w = torch.randn(10, 1, 3, 3, device=device)
    torch.testing.assert_close(cnnops.conv2d(x, w, padding=1, groups=5),
                               F.conv2d(x, w, padding=1, groups=5), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("version", VERSIONS)
def test_bias_relu_epilogue(version, device):
    x = torch.randn(2, 6, 9, 10, device=device)
    w = torch.randn(12, 1, 3, 3, device=device)
    b = torch.randn(12, device=device)
    with torch.no_grad(), cnnops.kernel_version("depthwise", version):
        out = cnnops.functional.conv2d_bias_relu(x, w, b, stride=2, padding=1, groups=6)
    torch.testing.assert_close(out, F.relu(F.conv2d(x, w, b, stride=2, padding=1, groups=6)),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride, relu", [(1, False), (1, True), (2, False)],
                         ids=["conv2d", "conv2d_bias_relu", "stride2"])
@pytest.mark.parametrize("width_step", [0, 2], ids=["whole_vectors", "partial_vector"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nchw_output_past_stream_threshold(dtype, width_step, stride, relu):
    """NCHW results of 8 MiB and more whose rows are whole aligned vectors are written with
    non-temporal stores: at stride 1 the 3x3 rows read in place (grid_plane_rows: forward,
    and grad_input, which runs the same path), at stride 2 grad_input's rows
    (stride2_planes_transposed). A row width off the vector grid keeps ordinary stores."""
    side = 256 if dtype == torch.float32 else 184
    shape = (2, 16, side, side + width_step)
    assert torch.Size(shape).numel() * dtype.itemsize >= 8 << 20
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, dtype=dtype, generator=generator).requires_grad_()
    w = torch.randn(16, 1, 3, 3, dtype=dtype, generator=generator)
    b = torch.randn(16, dtype=dtype, generator=generator)
    kwargs = dict(stride=stride, padding=1, groups=16)
    expected = F.conv2d(x.detach().double(), w.double(), b.double(), **kwargs)
    if relu:
        with torch.no_grad():
            out = cnnops.functional.conv2d_bias_relu(x, w, b, **kwargs)
        assert_close(out, expected.relu(), dtype, 9, "forward with ReLU")
        return
    out = cnnops.conv2d(x, w, b, **kwargs)
    assert_close(out, expected, dtype, 9, "forward")
    grad = torch.randn(out.shape, dtype=dtype, generator=generator)
    (grad_x,) = torch.autograd.grad(out, x, grad)
    expected_grad = torch.nn.grad.conv2d_input(shape, w.double(), grad.double(), **kwargs)
    assert_close(grad_x, expected_grad, dtype, 9, "grad_input")


@pytest.mark.parametrize("channels", [96, 32])
@pytest.mark.parametrize("dtype", DTYPES)
def test_channels_last_output_past_stream_threshold(dtype, channels):
    """Channels-last depthwise 3x3 results of 8 MiB and more (forward, and grad_input at
    stride 1) leave the 3x3 channel blocks (channels_correlate_3x3) by non-temporal stores;
    the edge pixels keep ordinary ones. 96 channels: whole vectors, and more than four of
    them, with AVX2 and AVX-512 alike; 32 (float, AVX2: four vectors, which unstreamed take
    channels_correlate_9)."""
    side = math.ceil(math.sqrt((8 << 20) / (channels * dtype.itemsize))) + 4
    shape = (1, channels, side, side)
    assert torch.Size(shape).numel() * dtype.itemsize >= 8 << 20
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, dtype=dtype, generator=generator)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(channels, 1, 3, 3, dtype=dtype, generator=generator)
    b = torch.randn(channels, dtype=dtype, generator=generator)
    kwargs = dict(padding=1, groups=channels)
    out = cnnops.conv2d(x, w, b, **kwargs)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert_close(out, F.conv2d(x.detach().double(), w.double(), b.double(), **kwargs), dtype, 9,
                 "forward")
    grad = torch.randn(out.shape, dtype=dtype, generator=generator)
    grad = grad.contiguous(memory_format=torch.channels_last)
    (grad_x,) = torch.autograd.grad(out, x, grad)
    expected_grad = torch.nn.grad.conv2d_input(shape, w.double(), grad.double(), **kwargs)
    assert_close(grad_x, expected_grad, dtype, 9, "grad_input")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_kernel_matches_reference_kernel(dtype, device):
    # big enough that the CPU kernels cut planes into several strips and tasks
    c = DwCase(2, 20, 2, (70, 45), (3, 3), stride=1, padding=1)
    x = torch.randn(c.input_shape, dtype=dtype, device=device, requires_grad=True)
    w = torch.randn(c.weight_shape, dtype=dtype, device=device, requires_grad=True)
    results = []
    for version in (1, 2):
        with cnnops.kernel_version("depthwise", version):
            out = cnnops.conv2d(x, w, None, **c.kwargs)
            grad_output = torch.ones_like(out)
            results.append([out.detach(), *torch.autograd.grad(out, (x, w), grad_output)])
    rtol, atol = TOLERANCES[dtype]
    for name, ref, fast, length in zip(("output", "grad_input", "grad_weight"), *results,
                                       (9, 18, 2 * 70 * 45)):
        torch.testing.assert_close(fast, ref, rtol=2 * rtol, atol=2 * atol * math.sqrt(length),
                                   msg=lambda m: f"{name}: {m}")


# ---------------------------------------------------------------------------------------
# every instruction set of the CPU loops, in a child process (the choice is made once)

ISA_SCRIPT = r"""
import torch, torch.nn.functional as F, cnnops
torch.manual_seed(0)
cases = [((2, 3, 7, 9), 1, (3, 3), 1, 1, 1), ((2, 5, 13, 17), 2, (5, 5), 2, 2, 1),
         ((1, 4, 33, 35), 1, (3, 3), 1, 1, 2), ((2, 6, 9, 40), 2, (3, 2), (2, 3), (1, 0), 1),
         ((3, 8, 14, 14), 1, (3, 3), 2, 1, 1), ((1, 2, 5, 70), 3, (1, 7), 1, (0, 3), 1),
         # small planes: one vector per output row, at the AVX2 and AVX-512 bounds
         ((2, 4, 7, 8), 1, (3, 3), 1, 3, 1), ((2, 3, 6, 16), 2, (3, 3), 2, 1, 1),
         ((1, 4, 5, 32), 1, (3, 3), 2, 1, 1), ((2, 3, 9, 16), 1, (3, 3), 1, 1, 2)]
for dtype in (torch.float32, torch.float64):
    for layout in (torch.contiguous_format, torch.channels_last):
        for shape, mult, kernel, stride, padding, dilation in cases:
            x = torch.randn(shape, dtype=torch.float64).contiguous(memory_format=layout)
            w = torch.randn(shape[1] * mult, 1, *kernel, dtype=torch.float64)
            args = (stride, padding, dilation, shape[1])
            xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
            ref = F.conv2d(xr, wr, None, *args)
            gy = torch.randn_like(ref)
            refs = [ref, *torch.autograd.grad(ref, (xr, wr), gy)]
            xs, ws = x.to(dtype).requires_grad_(), w.to(dtype).requires_grad_()
            out = cnnops.conv2d(xs, ws, None, *args)
            ours = [out, *torch.autograd.grad(out, (xs, ws), gy.to(dtype))]
            for a, e in zip(ours, refs):
                err = ((a.double() - e).abs().max() / (1 + e.abs().max())).item()
                assert err < (1e-5 if dtype == torch.float32 else 1e-12), (shape, dtype, layout, err)
print(cnnops._ops._C.cpu_isa(), "ok")
"""


@pytest.mark.parametrize("isa", ["portable", "avx2", "avx512"])
def test_every_cpu_instruction_set_matches_torch(isa):
    best = cnnops._ops._C.cpu_best_isa()
    if isa == "avx512" and best != "avx512" or isa == "avx2" and best == "portable":
        pytest.skip(f"this CPU has no {isa}")
    env = dict(os.environ, CNNOPS_CPU_ISA=isa)
    result = subprocess.run([sys.executable, "-c", ISA_SCRIPT], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split()[0] == {"avx2": "avx2+fma"}.get(isa, isa)


# ---------------------------------------------------------------------------------------
# determinism, autograd, opcheck


def _run_all(x, w, grad_output):
    out = cnnops.conv2d(x, w, None, 2, 1, 1, x.shape[1])
    return [out.detach(), *torch.autograd.grad(out, (x, w), grad_output)]


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last],
                         ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("hw, mult", [((33, 35), 2), ((14, 14), 1)],
                         ids=["strips", "small_planes"])
def test_cpu_results_are_bitwise_reproducible_across_thread_counts(hw, mult, version, layout):
    x = torch.randn(3, 40, *hw).contiguous(memory_format=layout).requires_grad_()
    w = torch.randn(40 * mult, 1, 3, 3, requires_grad=True)
    grad_output = torch.randn(3, 40 * mult, (hw[0] + 1) // 2, (hw[1] + 1) // 2)
    threads = torch.get_num_threads()
    with cnnops.kernel_version("depthwise", version):
        first = _run_all(x, w, grad_output)
        try:
            torch.set_num_threads(1)
            single = _run_all(x, w, grad_output)
        finally:
            torch.set_num_threads(threads)
        again = _run_all(x, w, grad_output)
    for run in (single, again):
        for name, a, e in zip(("output", "grad_input", "grad_weight"), run, first):
            assert torch.equal(a, e), f"{name} differs bitwise"


# grad_weight over planes of 512 pixels or more sweeps a thread's channels image by image;
# with fewer than 32 output channels the batch is cut into chunks too, so the channels of one
# chunk that a thread owns start and end anywhere. Each case against the reference kernel,
# and bitwise alike at 1, 2 and 3 threads.
@pytest.mark.parametrize("batch, channels, mult, hw, stride", [
    (5, 3, 1, (24, 25), 1),   # 3x3 planes read in place (grid_plane_dot), 15 batch chunks
    (4, 2, 3, (30, 30), 1),   # channel multiplier
    (9, 8, 1, (26, 27), 2),   # stride 2 (small_planes_dot)
    (3, 40, 1, (23, 24), 1),  # one chunk, 40 channels: ranges split mid-chunk
], ids=["in_place", "mult3", "stride2", "one_chunk"])
def test_grad_weight_image_major_sweep_matches_reference(batch, channels, mult, hw, stride):
    x = torch.randn(batch, channels, *hw, dtype=torch.float64)
    w_shape = [channels * mult, 1, 3, 3]
    out_hw = [(n + 2 - 3) // stride + 1 for n in hw]
    grad_output = torch.randn(batch, channels * mult, *out_hw, dtype=torch.float64)
    args = ([stride, stride], [1, 1, 1, 1], [1, 1], channels)
    with cnnops.kernel_version("depthwise", 1):
        expected = torch.ops.cnnops.conv2d_grad_weight(grad_output, x, w_shape, *args)
    results = []
    for count in (1, 2, 3):
        with num_threads(count):
            results.append(torch.ops.cnnops.conv2d_grad_weight(grad_output, x, w_shape, *args))
    torch.testing.assert_close(results[0], expected, rtol=1e-10, atol=1e-10)
    for result in results[1:]:
        assert torch.equal(result, results[0]), "grad_weight differs bitwise across threads"


# Autograd hands the gradient of sum() or mean() over as an expanded tensor (zero strides):
# the fast kernels copy it densely first, in the layout of grad_input (for grad_weight, of
# the input), so their results equal those of that dense copy bitwise, and the reference
# kernel's, which reads it through its strides.
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("expanded", ["scalar", "per_channel"])
def test_expanded_grad_output_matches_dense(expanded, stride, layout):
    channels, hw = 24, (15, 14)
    x = make_tensor((2, channels, *hw), layout, torch.float32, "cpu")
    w = torch.randn(channels, 1, 3, 3)
    out_hw = [(n + 2 - 3) // stride + 1 for n in hw]
    source = torch.randn(()) if expanded == "scalar" else torch.randn(1, channels, 1, 1)
    grad_output = source.expand(2, channels, *out_hw)
    args = ([stride, stride], [1, 1, 1, 1], [1, 1], channels)
    for op, operand, size in ((torch.ops.cnnops.conv2d_grad_input, w, x.shape),
                              (torch.ops.cnnops.conv2d_grad_weight, x, w.shape)):
        result = op(grad_output, operand, size, *args)
        like = result if op is torch.ops.cnnops.conv2d_grad_input else x
        channels_last = not like.is_contiguous()
        dense = grad_output.contiguous(
            memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        assert torch.equal(result, op(dense, operand, size, *args)), op
        with cnnops.kernel_version("depthwise", 1):
            expected = op(grad_output, operand, size, *args)
        torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-4)


GRADCHECK_CASES = [
    case("k3_pad1_bias", 1, 2, 1, (4, 5), (3, 3), padding=1),
    case("mult2_stride2", 2, 2, 2, (5, 4), (3, 2), stride=2, padding=(1, 0), bias=False),
    case("c1_dilation2", 1, 1, 2, (6, 5), (2, 2), padding=1, dilation=2),
    case("c1_mult3_16_wide", 1, 1, 3, (3, 16), (3, 3), padding=1),  # multiplier_planes
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("c", GRADCHECK_CASES)
def test_gradcheck_and_gradgradcheck(c, version, device):
    operands = [torch.randn(c.input_shape, dtype=torch.float64, device=device, requires_grad=True),
                torch.randn(c.weight_shape, dtype=torch.float64, device=device, requires_grad=True)]
    if c.bias:
        operands.append(torch.randn(c.weight_shape[0], dtype=torch.float64, device=device,
                                    requires_grad=True))

    def fn(x, w, *b):
        return cnnops.conv2d(x, w, b[0] if b else None, **c.kwargs)

    with cnnops.kernel_version("depthwise", version):
        assert torch.autograd.gradcheck(fn, operands)
        assert torch.autograd.gradgradcheck(fn, operands)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_opcheck_depthwise_geometries(layout, device):
    x = make_tensor((2, 6, 7, 8), layout, torch.float32, device).requires_grad_()
    w = torch.randn(12, 1, 3, 3, device=device, requires_grad=True)
    b = torch.randn(12, device=device, requires_grad=True)
    args = ([2, 1], [1, 0, 1, 2], [1, 1], 6)
    torch.library.opcheck(torch.ops.cnnops.conv2d, (x, w, b, *args))
    grad_output = make_tensor((2, 12, 3, 9), layout, torch.float32, device)
    torch.library.opcheck(torch.ops.cnnops.conv2d_grad_input,
                          (grad_output, w.detach(), [2, 6, 7, 8], *args))
    torch.library.opcheck(torch.ops.cnnops.conv2d_grad_weight,
                          (grad_output, x.detach(), [12, 1, 3, 3], *args))


@pytest.mark.cuda
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("c", [CASES[2], CASES[5], CASES[17]])
def test_half_precision_cuda_matches_torch(c, version, dtype, layout):
    check_against_torch(c, dtype, "cuda", version, layout)
