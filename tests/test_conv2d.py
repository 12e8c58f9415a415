"""cnnops.conv2d against torch.nn.functional.conv2d: forward values, gradients, memory format.

Every case runs on the reference kernel (version 1) and the fast kernels (version 2, and the
CPU's Winograd version 3 and direct version 4). The
reference result is F.conv2d in float64 on upcast copies of the operands, so the only
error measured is the kernel's own; tolerances come from the dtype under test:
atol + rtol * |ref|, with atol growing as sqrt(reduction length).
"""

import math
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F

import cnnops

# torch's own F.conv2d (the reference) warns about even kernels with padding='same'
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64")]
# Versions 3 (Winograd F(2x2, 3x3)), 4 (direct, short reductions) and 5 (tap by tap, tiny
# planes) are CPU-only; on CUDA, and on the CPU for shapes they do not apply to, they run
# version 2.
VERSIONS = [pytest.param(1, id="v1_reference"), pytest.param(2, id="v2_fast"),
            pytest.param(3, id="v3_winograd"), pytest.param(4, id="v4_direct"),
            pytest.param(5, id="v5_tapwise")]

# dtype: (rtol, atol per sqrt(reduction length)); the operands are unit normals, so a sum of
# L products is about sqrt(L) in size and its rounding error grows with it.
TOLERANCES = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (5e-3, 1e-3),
    torch.bfloat16: (3e-2, 8e-3),
}


@dataclass(frozen=True)
class Case:
    input_shape: tuple[int, ...]
    weight_shape: tuple[int, int, int, int]
    bias: bool = False
    kwargs: dict = field(default_factory=dict)  # stride, padding, dilation, groups


def case(name, input_shape, weight_shape, bias=False, **kwargs):
    return pytest.param(Case(input_shape, weight_shape, bias, kwargs), id=name)


CASES = [
    case("1x1x1", (1, 1, 1, 1), (1, 1, 1, 1), bias=True),
    case("h1", (2, 3, 1, 9), (4, 3, 1, 3), padding=(0, 1)),
    case("w1_stride2", (2, 5, 9, 1), (3, 5, 3, 1), bias=True, stride=2, padding=1),
    case("1x1_image_k3_pad1", (2, 7, 1, 1), (5, 7, 3, 3), bias=True, padding=1),
    case("7x9_k1", (2, 17, 7, 9), (13, 17, 1, 1), bias=True),
    case("7x9_k3", (2, 3, 7, 9), (5, 3, 3, 3), padding=1),
    case("7x9_k4x4", (2, 5, 7, 9), (7, 5, 4, 4), bias=True),
    case("7x9_k6x5", (1, 7, 7, 9), (3, 7, 6, 5), padding=(1, 2)),
    case("7x9_k2x2_stride2", (3, 3, 7, 9), (5, 3, 2, 2), stride=2),
    case("13x17_k5_stride3", (2, 5, 13, 17), (7, 5, 5, 5), bias=True, stride=3, padding=2),
    case("13x17_k7_pad3", (1, 3, 13, 17), (5, 3, 7, 7), padding=3),
    case("13x17_k3x5_stride2x1", (2, 13, 13, 17), (3, 13, 3, 5), stride=(2, 1), padding=(0, 2)),
    # stride > kernel: some input pixels feed no output and must get a zero gradient
    case("k1_stride3", (2, 5, 7, 9), (3, 5, 1, 1), stride=3),
    case("dilation2", (2, 3, 13, 17), (4, 3, 3, 3), bias=True, dilation=2, padding=2),
    case("dilation2x3_stride2", (1, 5, 13, 17), (6, 5, 3, 2), stride=2, dilation=(2, 3),
         padding=(1, 0)),
    case("padding_wider_than_kernel", (1, 2, 5, 4), (3, 2, 2, 3), padding=(4, 3)),
    case("kernel_equals_input", (3, 4, 5, 5), (2, 4, 5, 5), bias=True),
    case("groups2", (2, 6, 9, 7), (4, 3, 3, 3), bias=True, groups=2, padding=1),
    case("groups2_odd_channels_stride2", (2, 14, 7, 9), (10, 7, 3, 3), groups=2, stride=2),
    case("groups3_k1", (2, 9, 5, 6), (6, 3, 1, 1), groups=3),
    # 1x1 planes of several column chunks, the last one ending in a partial block
    case("k1_planes_40x37", (2, 20, 40, 37), (30, 20, 1, 1), bias=True),
    case("groups_eq_channels", (2, 13, 9, 11), (13, 1, 3, 3), bias=True, groups=13, padding=1),
    case("groups_eq_channels_x2_stride2", (1, 5, 7, 9), (10, 1, 5, 5), groups=5, stride=2,
         padding=2),
    # one input channel per group and many outputs: the direct kernel, not the depthwise one
    case("one_channel_to_16", (2, 1, 9, 37), (16, 1, 3, 3), bias=True, padding=1),
    case("groups2_multiplier8_k5", (2, 2, 7, 9), (16, 1, 5, 5), groups=2, padding=(2, 1)),
    case("same_k3", (2, 3, 7, 9), (5, 3, 3, 3), bias=True, padding="same"),
    case("same_k2x2", (2, 3, 7, 9), (4, 3, 2, 2), padding="same"),
    case("same_k4x4", (1, 5, 7, 9), (3, 5, 4, 4), bias=True, padding="same"),
    case("same_k6x5", (2, 3, 7, 9), (4, 3, 6, 5), padding="same"),
    case("same_k4_dilation3", (1, 3, 13, 17), (2, 3, 4, 4), padding="same", dilation=3),
    case("same_k2x3_groups2", (2, 4, 7, 9), (6, 2, 2, 3), bias=True, padding="same", groups=2),
    case("valid", (2, 3, 7, 9), (4, 3, 3, 2), bias=True, padding="valid"),
    case("batch0", (0, 3, 7, 9), (4, 3, 3, 3), bias=True, padding=1),
    case("unbatched", (3, 7, 9), (4, 3, 3, 3), bias=True, padding=1),
    case("unbatched_same_k4x2", (5, 13, 17), (2, 5, 4, 2), padding="same"),
    # big enough to cross the tile boundaries of a fast kernel in every dimension
    case("tile_19to37_33x35", (2, 19, 33, 35), (37, 19, 3, 3), bias=True, padding=1),
    case("tile_64to70_20x20", (1, 64, 20, 20), (70, 64, 3, 3), padding=1),
    # few tiles for many output channels: 4 or more blocks of output channels share each
    # block of tiles, whose input transform is then computed once up front (two tile blocks
    # of two channel blocks, with two threads)
    case("winograd_shared_300to200_12x12", (1, 300, 12, 12), (200, 300, 3, 3), bias=True,
         padding=1),
    # rows of many tiles: Winograd's contiguous loads and stores of 8 neighbouring tiles
    case("wide_rows_17to19_21x70", (1, 17, 21, 70), (19, 17, 3, 3), bias=True, padding=1),
    case("tile_19to37_k5_stride2", (2, 19, 33, 35), (37, 19, 5, 5), bias=True, stride=2, padding=2),
    # thin convolutions (1 to 3 output channels) run the 3-row direct kernel on any reduction:
    # this forward pass, and grad_input of the first-layer case after it, on rows of a full
    # block of columns and a partial one
    case("thin_40to3_rows_130", (2, 40, 6, 130), (3, 40, 3, 3), bias=True, padding=1),
    case("first_layer_3to20_rows_150", (2, 3, 5, 150), (20, 3, 3, 3), padding=(1, 2),
         dilation=(1, 2)),
    # short reductions on planes of up to 64x64 whose input rows are as wide as the output's:
    # each plane swept flat in whole vectors of pixels, the column taps that fall off a row
    # masked: a partial block of output channels and vectors left after the last block; one
    # image of two groups split into runs of pixels; a plane smaller than one vector; every
    # column tap masked (same padding, width dilation); a zero row below the rows only
    case("planar_1to20_28x28", (3, 1, 28, 28), (20, 1, 3, 3), bias=True, padding=1),
    case("planar_groups2_20x20_batch1", (1, 4, 20, 20), (16, 2, 3, 3), bias=True, groups=2,
         padding=1),
    case("planar_3x5_plane", (2, 1, 3, 5), (8, 1, 3, 3), padding=1),
    case("planar_same_k3x4_dilation1x2", (2, 2, 11, 13), (9, 2, 3, 4), padding="same",
         dilation=(1, 2)),
    case("planar_same_k2x3_pads_bottom", (2, 3, 6, 10), (10, 3, 2, 3), bias=True,
         padding="same"),
    # small planes run the direct kernel over each image's output as one flat run of
    # columns, padding columns computed and dropped (the forward pass and grad_input)
    case("flat_32to24_14x14", (2, 32, 14, 14), (24, 32, 3, 3), bias=True, padding=1),
    case("flat_groups2_dilation2_12x14", (2, 16, 12, 14), (20, 8, 3, 3), bias=True, groups=2,
         padding=2, dilation=2),
    # right padding wider than the left: rows cannot share their padding columns
    case("flat_same_k4_12x14", (2, 8, 12, 14), (16, 8, 4, 4), padding="same"),
    # planes where the sweep would keep little of what it computes (7x7) run the output
    # pixels alone, MR at a time across images: chunks of pixels that span images, a
    # partial last block, a full and a partial panel of output channels; and groups
    case("flat_gathered_24to40_7x7_batch6", (6, 24, 7, 7), (40, 24, 3, 3), bias=True,
         padding=1),
    case("flat_gathered_groups2_7x7_batch5", (5, 16, 7, 7), (24, 8, 3, 3), groups=2,
         padding=1),
    # 2x2 outputs: one column tile for the whole batch, split into blocks of output channels
    # that share its packed B (the implicit GEMM, which version 0 takes there in float32;
    # in float64 the batch fills half a panel and version 0 sums tap by tap)
    case("one_tile_40to200_2x2", (8, 40, 2, 2), (200, 40, 3, 3), bias=True, padding=1),
    # tiny planes summed tap by tap (version 5; version 0 where half the taps read padding
    # and the batch fills half a panel): a partial panel of images and of output channels,
    # two reduction blocks at stride 2, groups with dilation
    case("tapwise_24to40_2x2_batch17", (17, 24, 2, 2), (40, 24, 3, 3), bias=True, padding=1),
    case("tapwise_300to20_stride2", (16, 300, 3, 3), (20, 300, 3, 3), stride=2, padding=1),
    case("tapwise_groups2_dilation2_4x3", (16, 8, 4, 3), (10, 4, 3, 3), bias=True, groups=2,
         padding=2, dilation=2),
]


# Operand layouts: how a tensor of a given (logical) shape is laid out in memory.
def make_tensor(shape, layout="contiguous", dtype=torch.float32, device="cpu"):
    def randn(*size):
        return torch.randn(*size, dtype=torch.float32).to(dtype=dtype, device=device)

    if len(shape) != 4:
        if layout == "sliced":
            return randn(*shape[:-1], 2 * shape[-1])[..., ::2]
        if layout == "expanded":
            return randn(*(1 for _ in shape)).expand(*shape)
        return randn(*shape)
    n, c, h, w = shape
    if layout in ("contiguous", "like_output"):
        return randn(n, c, h, w)
    if layout == "channels_last":
        return randn(n, c, h, w).contiguous(memory_format=torch.channels_last)
    if layout == "permuted_nhwc":
        return randn(n, h, w, c).permute(0, 3, 1, 2)
    if layout == "transposed_hw":
        return randn(n, c, w, h).transpose(2, 3)
    if layout == "sliced":
        return randn(n, c, h, 2 * w)[:, :, :, ::2]
    if layout == "offset":
        return randn(n + 1, c + 2, h + 1, w + 3)[1:, 2:, 1:, 3:]
    if layout == "expanded":
        return randn(1, c, h, w).expand(n, c, h, w)
    raise AssertionError(f"unknown layout {layout}")


def make_operands(c: Case, dtype, device, input_layout="contiguous", weight_layout="contiguous",
                  requires_grad=False):
    x = make_tensor(c.input_shape, input_layout, dtype, device)
    w = make_tensor(c.weight_shape, weight_layout, dtype, device)
    # the bias follows the weight's layout where a 1-D tensor can (sliced, expanded)
    b = make_tensor((c.weight_shape[0],), weight_layout, dtype, device) if c.bias else None
    if requires_grad:
        for t in (x, w, b):
            if t is not None:
                t.requires_grad_()
    return x, w, b


def reduction_lengths(c: Case, out_shape):
    """How many products each result element sums: output, grad_input, grad_weight/bias."""
    k, cg, r, s = c.weight_shape
    groups = c.kwargs.get("groups", 1)
    batch = 1 if len(c.input_shape) == 3 else c.input_shape[0]
    return {
        "output": cg * r * s,
        "grad_input": (k // groups) * r * s,
        "grad_weight": batch * out_shape[-2] * out_shape[-1],
        "grad_bias": batch * out_shape[-2] * out_shape[-1],
    }


def assert_conv_close(actual, expected, dtype, reduction, what):
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == expected.shape, (
        f"{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    rtol, atol_unit = TOLERANCES[dtype]
    atol = atol_unit * math.sqrt(max(reduction, 1))
    torch.testing.assert_close(actual.to(expected.dtype), expected, rtol=rtol, atol=atol,
                               msg=lambda m: f"{what}: {m}")


def assert_same_memory_format(actual, expected):
    # Compared as flags, so sizes of 1 (where both formats hold at once) need no special case.
    for memory_format in (torch.contiguous_format, torch.channels_last):
        assert (actual.is_contiguous(memory_format=memory_format)
                == expected.is_contiguous(memory_format=memory_format)), (
            f"output strides {actual.stride()}, torch's {expected.stride()}")


def reference(x, w, b, c: Case, grad_output=None):
    """F.conv2d in float64 on upcast copies; returns the output and, given grad_output,
    the gradients with respect to (x, w, b)."""
    operands = [t.detach().to(torch.float64).requires_grad_(grad_output is not None)
                if t is not None else None for t in (x, w, b)]
    out = F.conv2d(*operands, **c.kwargs)
    if grad_output is None:
        return out.detach(), None
    wanted = [t for t in operands if t is not None]
    grads = torch.autograd.grad(out, wanted, grad_output.to(torch.float64))
    return out.detach(), list(grads) + ([None] if b is None else [])


def run_cnnops(x, w, b, c: Case, version, grad_output=None):
    with cnnops.kernel_version("conv2d", version):
        out = cnnops.conv2d(x, w, b, **c.kwargs)
        if grad_output is None:
            return out, None
        wanted = [t for t in (x, w, b) if t is not None]
        grads = torch.autograd.grad(out, wanted, grad_output)
    return out, list(grads) + ([None] if b is None else [])


def check_against_torch(c: Case, dtype, device, version, input_layout="contiguous",
                        weight_layout="contiguous", grad_layout=None):
    """Forward (values, dtype, device, memory format) and, if grad_layout is given, the
    gradients of x, w and b, all against F.conv2d."""
    x, w, b = make_operands(c, dtype, device, input_layout, weight_layout,
                            requires_grad=grad_layout is not None)
    native = F.conv2d(x.detach(), w.detach(), None if b is None else b.detach(), **c.kwargs)
    grad_output = None
    if grad_layout is not None:
        if grad_layout == "like_output":
            grad_output = torch.randn_like(native)
        else:
            grad_output = make_tensor(tuple(native.shape), grad_layout, dtype, device)
    out, grads = run_cnnops(x, w, b, c, version, grad_output)
    ref_out, ref_grads = reference(x, w, b, c, grad_output)
    lengths = reduction_lengths(c, ref_out.shape)

    assert out.device == native.device
    assert_conv_close(out, ref_out, dtype, lengths["output"], "output")
    assert_same_memory_format(out, native)
    if grad_output is None:
        return
    for name, grad, ref_grad, operand in zip(("grad_input", "grad_weight", "grad_bias"), grads,
                                             ref_grads, (x, w, b)):
        if operand is None:
            continue
        assert grad.device == operand.device
        assert_conv_close(grad, ref_grad, dtype, lengths[name], name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("c", CASES)
def test_forward_matches_torch(c, version, dtype, device):
    check_against_torch(c, dtype, device, version)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("c", CASES)
def test_gradients_match_torch(c, version, dtype, device):
    check_against_torch(c, dtype, device, version, grad_layout="like_output")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("c", CASES)
def test_automatic_kernel_matches_torch(c, device):
    check_against_torch(c, torch.float32, device, 0, grad_layout="like_output")


LAYOUT_CASES = [
    case("generic", (2, 5, 9, 11), (7, 5, 3, 3), bias=True, padding=1),
    case("stride2_groups2", (2, 6, 7, 9), (4, 3, 3, 2), stride=2, groups=2),
    case("depthwise_same_k4x3", (2, 7, 9, 8), (7, 1, 4, 3), bias=True, padding="same", groups=7),
    case("tile_19to37_33x35", (2, 19, 33, 35), (37, 19, 3, 3), bias=True, padding=1),
    # Winograd into a channels-last output: channels staged 64 at a time (a full and a partial
    # group), partial tiles at the right and bottom edges
    case("winograd_20to70_9x13", (2, 20, 9, 13), (70, 20, 3, 3), bias=True, padding=1),
    # 1x1 between channels-last tensors: pixels as the GEMM's rows (two reduction blocks in
    # the second case)
    case("k1_groups2", (2, 12, 9, 13), (18, 6, 1, 1), bias=True, groups=2),
    case("k1_300to40", (2, 300, 5, 6), (40, 300, 1, 1)),
    # channels-last GEMM over a spatially padded copy: dilation, strides, asymmetric kernel
    case("dilation2x1_stride2x1", (2, 6, 11, 10), (8, 6, 3, 2), bias=True, padding=(2, 1),
         dilation=(2, 1), stride=(2, 1)),
    # the flat direct convolution of a small plane, its tile written pixel by pixel into a
    # channels-last output (a full panel of output channels and a partial one)
    case("flat_40to40_7x7", (2, 40, 7, 7), (40, 40, 3, 3), bias=True, padding=1),
    # tap by tap: the images are the GEMM's columns, read and written at the batch stride
    case("tapwise_12to20_2x2", (16, 12, 2, 2), (20, 12, 3, 3), bias=True, padding=1),
    # a first layer: channels-last grad_output transposed into planes (channels_to_planes:
    # 8 x 8 blocks and 5 channels, 32-pixel blocks and 6 pixels left) for the direct kernels
    case("first_layer_3to13_5x70", (2, 3, 5, 70), (13, 3, 3, 3), bias=True, padding=1),
    # ... read in place by the pixel-major weight-gradient kernel where the output channels
    # fill whole panels (64: two or more on every ISA; 32: one or more), at unit width stride
    case("first_layer_3to64_9x21", (2, 3, 9, 21), (64, 3, 3, 3), bias=True, padding=1),
    case("first_layer_3to32_stride2x1", (2, 3, 11, 21), (32, 3, 3, 3), padding=(2, 1),
         stride=(2, 1)),
]

# (input layout, weight and bias layout, grad_output layout)
LAYOUTS = [
    pytest.param(("channels_last", "contiguous", "like_output"), id="channels_last_input"),
    pytest.param(("contiguous", "channels_last", "like_output"), id="channels_last_weight"),
    pytest.param(("channels_last", "channels_last", "like_output"), id="channels_last_both"),
    pytest.param(("permuted_nhwc", "contiguous", "like_output"), id="permuted_nhwc_input"),
    pytest.param(("permuted_nhwc", "permuted_nhwc", "like_output"), id="permuted_nhwc_both"),
    pytest.param(("transposed_hw", "transposed_hw", "like_output"), id="transposed_hw"),
    pytest.param(("sliced", "contiguous", "like_output"), id="sliced_input"),
    pytest.param(("sliced", "sliced", "sliced"), id="sliced_all"),
    pytest.param(("offset", "offset", "like_output"), id="offset_views"),
    pytest.param(("expanded", "expanded", "like_output"), id="expanded"),
    pytest.param(("contiguous", "contiguous", "channels_last"), id="channels_last_grad_output"),
    pytest.param(("channels_last", "contiguous", "contiguous"),
                 id="contiguous_grad_output_of_channels_last"),
    pytest.param(("contiguous", "contiguous", "transposed_hw"), id="transposed_grad_output"),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("layouts", LAYOUTS)
@pytest.mark.parametrize("c", LAYOUT_CASES)
def test_layouts_match_torch(c, layouts, version, device):
    input_layout, weight_layout, grad_layout = layouts
    check_against_torch(c, torch.float32, device, version, input_layout, weight_layout, grad_layout)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "input_layout, weight_layout",
    [("contiguous", "contiguous"), ("channels_last", "contiguous"), ("contiguous", "channels_last"),
     ("channels_last", "channels_last")],
    ids=["contiguous", "channels_last_input", "channels_last_weight", "channels_last_both"],
)
def test_gradient_memory_format_matches_torch(input_layout, weight_layout, version, device):
    c = Case((2, 5, 9, 11), (7, 5, 3, 3), True, dict(padding=1))
    x, w, b = make_operands(c, torch.float32, device, input_layout, weight_layout,
                            requires_grad=True)
    native = F.conv2d(x, w, b, **c.kwargs)
    grad_output = torch.randn_like(native)
    native_grads = torch.autograd.grad(native, (x, w), grad_output)
    with cnnops.kernel_version("conv2d", version):
        grads = torch.autograd.grad(cnnops.conv2d(x, w, b, **c.kwargs), (x, w), grad_output)
    mismatches = [
        f"{name}: strides {grad.stride()}, torch's {native_grad.stride()}"
        for name, grad, native_grad in zip(("grad_input", "grad_weight"), grads, native_grads)
        if grad.is_contiguous(memory_format=torch.channels_last)
        != native_grad.is_contiguous(memory_format=torch.channels_last)
    ]
    assert not mismatches, "; ".join(mismatches)


HALF_CASES = [
    case("1x1x1", (1, 1, 1, 1), (1, 1, 1, 1), bias=True),
    case("7x9_k3", (2, 3, 7, 9), (5, 3, 3, 3), padding=1),
    case("13x17_k5_stride3", (2, 5, 13, 17), (7, 5, 5, 5), bias=True, stride=3, padding=2),
    case("dilation2", (2, 3, 13, 17), (4, 3, 3, 3), bias=True, dilation=2, padding=2),
    case("groups_eq_channels", (2, 13, 9, 11), (13, 1, 3, 3), bias=True, groups=13, padding=1),
    case("same_k4x4", (1, 5, 7, 9), (3, 5, 4, 4), bias=True, padding="same"),
    case("batch0", (0, 3, 7, 9), (4, 3, 3, 3), bias=True, padding=1),
    case("tile_19to37_33x35", (2, 19, 33, 35), (37, 19, 3, 3), bias=True, padding=1),
    case("tile_64to70_20x20", (1, 64, 20, 20), (70, 64, 3, 3), padding=1),
    # few tiles for many output channels: 4 or more blocks of output channels share each
    # block of tiles, whose input transform is then computed once up front (two tile blocks
    # of two channel blocks, with two threads)
    case("winograd_shared_300to200_12x12", (1, 300, 12, 12), (200, 300, 3, 3), bias=True,
         padding=1),
    # rows of many tiles: Winograd's contiguous loads and stores of 8 neighbouring tiles
    case("wide_rows_17to19_21x70", (1, 17, 21, 70), (19, 17, 3, 3), bias=True, padding=1),
]


@pytest.mark.cuda
@pytest.mark.parametrize("input_layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("c", HALF_CASES)
def test_half_precision_cuda_matches_torch(c, version, dtype, input_layout):
    check_against_torch(c, dtype, "cuda", version, input_layout, grad_layout="like_output")


REFERENCE_VS_FAST_CASES = [
    case("13x17_k5_stride3", (2, 5, 13, 17), (7, 5, 5, 5), bias=True, stride=3, padding=2),
    case("groups2_odd_channels_stride2", (2, 14, 7, 9), (10, 7, 3, 3), groups=2, stride=2),
    case("same_k6x5", (2, 3, 7, 9), (4, 3, 6, 5), padding="same"),
    case("dilation2x3_stride2", (1, 5, 13, 17), (6, 5, 3, 2), stride=2, dilation=(2, 3),
         padding=(1, 0)),
    case("tile_19to37_33x35", (2, 19, 33, 35), (37, 19, 3, 3), bias=True, padding=1),
    case("tile_64to70_20x20", (1, 64, 20, 20), (70, 64, 3, 3), padding=1),
    # few tiles for many output channels: 4 or more blocks of output channels share each
    # block of tiles, whose input transform is then computed once up front (two tile blocks
    # of two channel blocks, with two threads)
    case("winograd_shared_300to200_12x12", (1, 300, 12, 12), (200, 300, 3, 3), bias=True,
         padding=1),
    # rows of many tiles: Winograd's contiguous loads and stores of 8 neighbouring tiles
    case("wide_rows_17to19_21x70", (1, 17, 21, 70), (19, 17, 3, 3), bias=True, padding=1),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", REFERENCE_VS_FAST_CASES)
def test_fast_kernel_matches_reference_kernel(c, dtype, device):
    x, w, b = make_operands(c, dtype, device, requires_grad=True)
    grad_output = torch.randn_like(F.conv2d(x.detach(), w.detach(), None, **c.kwargs))
    out_ref, grads_ref = run_cnnops(x, w, b, c, 1, grad_output)
    out_fast, grads_fast = run_cnnops(x, w, b, c, 2, grad_output)
    lengths = reduction_lengths(c, out_ref.shape)
    # both sides carry rounding error, hence twice the tolerance against an exact reference
    assert_conv_close(out_fast, out_ref.detach(), dtype, 4 * lengths["output"], "output")
    for name, fast, ref in zip(("grad_input", "grad_weight", "grad_bias"), grads_fast, grads_ref):
        if ref is not None:
            assert_conv_close(fast, ref, dtype, 4 * lengths[name], name)


# Autograd hands the gradient of sum() or mean() over as an expanded tensor (zero strides):
# grad_input's fast kernels copy it densely first (in grad_input's layout), so the result
# equals that dense copy's bitwise, and the reference kernel's, which reads it through its
# strides, within tolerance.
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("kernel, stride, padding", [(1, 1, 0), (3, 1, 1), (3, 2, 1)],
                         ids=["1x1", "3x3", "3x3_stride2"])
def test_expanded_grad_output_matches_dense(kernel, stride, padding, layout):
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(2, 12, 15, 14).contiguous(memory_format=memory_format)
    w = torch.randn(10, 12, kernel, kernel).contiguous(memory_format=memory_format)
    out_shape = F.conv2d(x, w, stride=stride, padding=padding).shape
    grad_output = torch.randn(1, 10, 1, 1).expand(out_shape)
    args = ([stride, stride], [padding] * 4, [1, 1], 1)
    result = torch.ops.cnnops.conv2d_grad_input(grad_output, w, x.shape, *args)
    dense = grad_output.contiguous(memory_format=memory_format)
    assert torch.equal(result, torch.ops.cnnops.conv2d_grad_input(dense, w, x.shape, *args))
    with cnnops.kernel_version("conv2d", 1):
        expected = torch.ops.cnnops.conv2d_grad_input(grad_output, w, x.shape, *args)
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-4)


# grad_input at strides above 1 (and at stride 1 with padding past the kernel) runs once
# per stride phase of the input, each a stride-1 convolution of grad_output with the taps
# that reach it, where the phases have at least 256 columns (images x phase pixels) or
# grad_input is channels-last; smaller NCHW problems take col2im. The two sizes below fall on
# either side, and the cases take phases that no tap reaches (zero), phases whose first
# tap lies past grad_output's first row, phases wider than grad_output, and thin layers.
STRIDED_GRAD_INPUT_CASES = [
    # in channels, out channels, kernel, stride, [top, bottom, left, right], dilation, groups
    pytest.param(8, 6, (3, 3), (2, 2), [1, 1, 1, 1], (1, 1), 1, id="3x3s2"),
    pytest.param(8, 6, (1, 1), (2, 2), [0, 0, 0, 0], (1, 1), 1, id="1x1s2_zero_phases"),
    pytest.param(8, 6, (3, 3), (2, 2), [2, 2, 2, 2], (2, 2), 2, id="dilation_equals_stride"),
    pytest.param(8, 6, (5, 4), (3, 2), [2, 0, 1, 3], (1, 1), 1, id="5x4s3x2_asymmetric"),
    pytest.param(8, 6, (2, 2), (2, 2), [0, 0, 0, 0], (1, 1), 1, id="2x2s2"),
    pytest.param(8, 6, (3, 3), (1, 1), [3, 2, 4, 3], (1, 1), 1, id="s1_padding_past_kernel"),
    pytest.param(3, 8, (7, 7), (2, 2), [3, 3, 3, 3], (1, 1), 1, id="7x7s2_thin"),
    pytest.param(8, 6, (3, 3), (3, 3), [1, 1, 1, 1], (2, 1), 2, id="3x3s3_dilated_rows"),
]


def _explicitly_padded_conv(x, w, b, stride, padding, dilation, groups):
    """F.conv2d with [top, bottom, left, right] padding, which F.conv2d cannot express."""
    top, bottom, left, right = padding
    return F.conv2d(F.pad(x, (left, right, top, bottom)), w, b, stride, 0, dilation, groups)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("batch, size", [(1, 9), (3, 22)], ids=["small", "large"])
@pytest.mark.parametrize("C, K, kernel, stride, padding, dilation, groups",
                         STRIDED_GRAD_INPUT_CASES)
def test_strided_grad_input_matches_torch(C, K, kernel, stride, padding, dilation, groups,
                                          batch, size, layout, version):
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(batch, C, size, size + 1, dtype=torch.float64, requires_grad=True)
    w = torch.randn(K, C // groups, *kernel, dtype=torch.float64)
    y = _explicitly_padded_conv(x, w, None, stride, padding, dilation, groups)
    grad_output = torch.randn_like(y).contiguous(memory_format=memory_format)
    (expected,) = torch.autograd.grad(y, x, grad_output)
    with cnnops.kernel_version("conv2d", version):
        result = torch.ops.cnnops.conv2d_grad_input(grad_output, w, x.shape, list(stride),
                                                    padding, list(dilation), groups)
    assert result.is_contiguous(memory_format=memory_format)
    torch.testing.assert_close(result, expected, rtol=1e-10, atol=1e-10)


# Strided layers with few channels (a network's first layers) run the flat direct kernels,
# forward and grad_weight, over the input split into its stride phases (PhasedInput in
# cpu/conv2d.cpp): these cases take that path in versions 0 and 4 (1 and 2 check the same
# results through the other kernels).
STRIDED_FLAT_CASES = [
    # in channels, out channels, kernel, stride, [top, bottom, left, right], dilation, groups
    pytest.param(3, 8, (7, 7), (2, 2), [3, 3, 3, 3], (1, 1), 1, id="7x7s2_stem"),
    pytest.param(3, 8, (3, 3), (2, 2), [1, 1, 1, 1], (1, 1), 1, id="3x3s2"),
    pytest.param(4, 10, (5, 3), (3, 2), [2, 0, 1, 2], (1, 1), 2, id="5x3s3x2_asymmetric"),
    pytest.param(3, 6, (3, 3), (2, 1), [1, 1, 1, 1], (2, 1), 1, id="s2x1_dilated_rows"),
    pytest.param(3, 8, (11, 11), (4, 4), [2, 2, 2, 2], (1, 1), 1, id="11x11s4"),
]


@pytest.mark.parametrize("version", [pytest.param(0, id="v0_auto"), *VERSIONS])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("C, K, kernel, stride, padding, dilation, groups", STRIDED_FLAT_CASES)
def test_strided_flat_kernels_match_torch(C, K, kernel, stride, padding, dilation, groups,
                                          layout, version):
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(3, C, 23, 21, dtype=torch.float64).contiguous(memory_format=memory_format)
    w = torch.randn(K, C // groups, *kernel, dtype=torch.float64, requires_grad=True)
    b = torch.randn(K, dtype=torch.float64)
    expected = _explicitly_padded_conv(x, w, b, stride, padding, dilation, groups)
    grad_output = torch.randn_like(expected).contiguous(memory_format=memory_format)
    (expected_grad_weight,) = torch.autograd.grad(expected, w, grad_output)
    args = (list(stride), padding, list(dilation), groups)
    with cnnops.kernel_version("conv2d", version):
        result = torch.ops.cnnops.conv2d(x, w.detach(), b, *args)
        grad_weight = torch.ops.cnnops.conv2d_grad_weight(grad_output, x, w.shape, *args)
    torch.testing.assert_close(result, expected.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad_weight, expected_grad_weight, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("version", VERSIONS)
def test_same_padding_of_even_kernel_pads_bottom_and_right(version):
    # kernel 2x3: 'same' needs 1 row (all of it at the bottom) and 2 columns (1 each side)
    x = torch.randn(2, 3, 6, 7)
    w = torch.randn(4, 3, 2, 3)
    with cnnops.kernel_version("conv2d", version):
        same = cnnops.conv2d(x, w, padding="same")
        explicit = torch.ops.cnnops.conv2d(x, w, None, [1, 1], [0, 1, 1, 1], [1, 1], 1)
    assert same.shape == (2, 4, 6, 7)
    torch.testing.assert_close(same, explicit, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(same, F.conv2d(x, w, padding="same"), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "padding", [[2, 0, 1, 3], [0, 3, 0, 0], [1, 0, 0, 2]],
    ids=["t2b0l1r3", "bottom3", "top1right2"])
def test_operators_with_asymmetric_padding(padding, version, device):
    """The three operators take [top, bottom, left, right] padding, which F.conv2d cannot
    express: the reference pads explicitly with F.pad."""
    top, bottom, left, right = padding
    stride, dilation, groups = [2, 1], [1, 2], 2
    x = torch.randn(2, 4, 7, 9, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, device=device)
    ref = F.conv2d(F.pad(x, (left, right, top, bottom)), w, b, stride, 0, dilation, groups)
    grad_output = torch.randn_like(ref)
    ref_grad_input, ref_grad_weight = torch.autograd.grad(ref, (x, w), grad_output)
    with cnnops.kernel_version("conv2d", version):
        out = torch.ops.cnnops.conv2d(x.detach(), w.detach(), b, stride, padding, dilation, groups)
        grad_input = torch.ops.cnnops.conv2d_grad_input(grad_output, w.detach(), list(x.shape),
                                                        stride, padding, dilation, groups)
        grad_weight = torch.ops.cnnops.conv2d_grad_weight(grad_output, x.detach(), list(w.shape),
                                                          stride, padding, dilation, groups)
    tol = dict(rtol=1e-10, atol=1e-11)
    torch.testing.assert_close(out, ref.detach(), **tol)
    torch.testing.assert_close(grad_input, ref_grad_input, **tol)
    torch.testing.assert_close(grad_weight, ref_grad_weight, **tol)


def test_functional_module_is_the_same_function():
    c = Case((2, 3, 7, 9), (5, 3, 3, 3), True, dict(stride=2, padding=1))
    x, w, b = make_operands(c, torch.float32, "cpu")
    torch.testing.assert_close(cnnops.functional.conv2d(x, w, b, **c.kwargs),
                               cnnops.conv2d(x, w, b, **c.kwargs), rtol=0, atol=0)


def test_keyword_names_match_torch():
    x, w, b = torch.randn(2, 4, 8, 9), torch.randn(6, 2, 3, 3), torch.randn(6)
    kwargs = dict(input=x, weight=w, bias=b, stride=2, padding=1, dilation=2, groups=2)
    torch.testing.assert_close(cnnops.conv2d(**kwargs), F.conv2d(**kwargs), rtol=1e-4, atol=1e-4)


def test_positional_order_matches_torch():
    x, w, b = torch.randn(2, 4, 8, 9), torch.randn(6, 2, 3, 3), torch.randn(6)
    args = (x, w, b, 2, 1, 2, 2)  # input, weight, bias, stride, padding, dilation, groups
    torch.testing.assert_close(cnnops.conv2d(*args), F.conv2d(*args), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param(dict(stride=[2, 1], padding=[1, 0], dilation=[1, 2]), id="lists"),
        pytest.param(dict(stride=(1, 2), padding=(0, 2), dilation=(2, 1)), id="tuples"),
        pytest.param(dict(stride=2, padding=1, dilation=2), id="ints"),
        pytest.param(dict(padding="valid", dilation=(2, 1)), id="valid_with_pair"),
        pytest.param(dict(padding="same", dilation=(1, 2)), id="same_with_pair"),
    ],
)
def test_argument_forms_match_torch(kwargs):
    x, w = torch.randn(2, 4, 8, 9), torch.randn(6, 4, 3, 2)
    torch.testing.assert_close(cnnops.conv2d(x, w, **kwargs), F.conv2d(x, w, **kwargs),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("relu", [False, True], ids=["conv2d", "conv2d_bias_relu"])
@pytest.mark.parametrize("out_channels", [32, 13])
@pytest.mark.parametrize("dtype", DTYPES)
def test_channels_last_output_past_stream_threshold(dtype, out_channels, relu):
    """Channels-last outputs of 8 MiB and more leave the channels-last GEMM by non-temporal
    stores (conv2d.cpp, store_biased_run): bias and ReLU applied on the way, and with 13
    channels the pixels' runs start off the 16-byte grid those stores need."""
    side = 416 if dtype == torch.float32 else 296
    assert side * side * 13 * dtype.itemsize >= 8 << 20
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, side, side, dtype=dtype, generator=generator)
    x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(out_channels, 3, 3, 3, dtype=dtype, generator=generator)
    b = torch.randn(out_channels, dtype=dtype, generator=generator)
    conv = cnnops.functional.conv2d_bias_relu if relu else cnnops.conv2d
    out = conv(x, w, b, padding=1)
    expected = F.conv2d(x.double(), w.double(), b.double(), padding=1)
    if relu:
        expected = expected.relu()
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert_conv_close(out, expected, dtype, 27, "channels-last output past the streaming threshold")


@pytest.mark.parametrize("relu", [False, True], ids=["conv2d", "conv2d_bias_relu"])
@pytest.mark.parametrize("bias", [False, True], ids=["no_bias", "bias"])
@pytest.mark.parametrize("batch, channels, side, out_channels", [
    pytest.param(3, 5, 14, 33, id="14x14_panel_of_1"),
    pytest.param(2, 8, 14, 17, id="14x14_half_panel_plus_1"),
    pytest.param(3, 6, 7, 40, id="7x7_calls_across_images"),
    pytest.param(2, 16, 7, 31, id="7x7_panel_of_31"),
    pytest.param(3, 24, 6, 33, id="6x6_gathered_calls_across_images"),
])
def test_small_plane_outputs_written_into_planes(batch, channels, side, out_channels, bias,
                                                 relu):
    """The flat direct kernels of 14x14 and 7x7 planes (AVX-512: whole_rows_planes) write
    their sums straight into NCHW planes, transposed in registers: output channels past the
    last whole vector of 16 and past the last panel of 32 are left alone, bias and ReLU applied
    on the way, and a call's pixels that run past a plane's end (7x7: two rows of 7 from two
    images; 6x6: 14 pixels gathered) continue in the next image's plane. grad_input at
    stride 1 is the same convolution."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, side, side, generator=generator)
    w = torch.randn(out_channels, channels, 3, 3, generator=generator)
    b = torch.randn(out_channels, generator=generator) if bias else None
    conv = cnnops.functional.conv2d_bias_relu if relu else cnnops.conv2d
    out = conv(x, w, b, padding=1)
    expected = F.conv2d(x.double(), w.double(), None if b is None else b.double(), padding=1)
    if relu:
        expected = expected.relu()
    reduction = channels * 9
    assert_conv_close(out, expected, torch.float32, reduction, "forward into planes")
    grad_output = torch.randn(expected.shape, generator=generator)
    grad_input = torch.ops.cnnops.conv2d_grad_input(grad_output, w, list(x.shape), [1, 1],
                                                    [1, 1, 1, 1], [1, 1], 1)
    expected_grad_input = torch.ops.aten.convolution_backward(
        grad_output.double(), x.double(), w.double(), None, [1, 1], [1, 1], [1, 1], False,
        [0, 0], 1, [True, False, False])[0]
    assert_conv_close(grad_input, expected_grad_input, torch.float32, out_channels * 9,
                      "grad_input into planes")
