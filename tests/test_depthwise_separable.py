"""cnnops.depthwise_separable_conv2d and cnnops.nn.DepthwiseSeparableConv2d against the native
two-conv sequence conv2d(conv2d(x, dw, db, groups=C), pw, pb): forward, the five gradients,
memory formats, both kernel versions, gradcheck / gradgradcheck, opcheck, torch.compile,
bad input.

The reference is the native sequence in float64 on upcast copies, so the error measured is
the kernel's own; tolerances come from the dtype (atol + rtol * |ref|), atol growing as the
square root of the number of products each result sums.
"""

import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

import cnnops
import cnnops.nn as cnn

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64")]
VERSIONS = [pytest.param(1, id="v1_reference"), pytest.param(2, id="v2_fused")]
TOLERANCES = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (1e-2, 4e-3),
    torch.bfloat16: (5e-2, 3e-2),
}
GRAD_NAMES = ("grad_input", "grad_depthwise_weight", "grad_pointwise_weight",
              "grad_depthwise_bias", "grad_pointwise_bias")


@dataclass(frozen=True)
class SepCase:
    batch: int
    channels: int
    mult: int
    out_channels: int
    hw: tuple[int, int]
    kernel: tuple[int, int] = (3, 3)
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] | str = 1
    dilation: int | tuple[int, int] = 1
    bias: bool = True

    @property
    def shapes(self):
        m = self.channels * self.mult
        return ((self.batch, self.channels, *self.hw), (m, 1, *self.kernel),
                (self.out_channels, m, 1, 1), (m,), (self.out_channels,))

    @property
    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation)


def case(name, *args, **kwargs):
    return pytest.param(SepCase(*args, **kwargs), id=name)


# Channels of 1, odd and multiples of 8; multipliers; depthwise channel counts past the CPU
# GEMM block (256) and output channels past the CUDA tile (64); row tiles that split images
# (40 x 40) and tiles of several whole small images (7 x 7, batch 9).
CASES = [
    case("c1_k3", 2, 1, 1, 5, (7, 9)),
    case("c3_mult2_stride2", 2, 3, 2, 7, (13, 17), stride=2),
    case("c8_to_16_14x14", 2, 8, 1, 16, (14, 14), bias=False),
    case("c17_to_33_dilation2", 3, 17, 1, 33, (20, 22), padding=2, dilation=2),
    case("c40_to_300", 1, 40, 1, 300, (9, 9)),
    case("c300_to_20", 1, 300, 1, 20, (5, 6)),
    case("c16_to_70_40x40_rows", 1, 16, 1, 70, (40, 40)),
    case("small_images_batch9", 9, 4, 1, 6, (7, 7)),
    case("k5_stride2", 2, 5, 1, 8, (11, 12), kernel=(5, 5), stride=2, padding=2),
    case("k1", 2, 6, 1, 4, (5, 7), kernel=(1, 1), padding=0),
    case("k3x2_same", 2, 4, 3, 5, (7, 9), kernel=(3, 2), padding="same"),
    case("stride2x1_pad2x0", 1, 7, 1, 9, (10, 8), stride=(2, 1), padding=(2, 0)),
    case("h1", 2, 3, 1, 4, (1, 9), kernel=(1, 3), padding=(0, 1)),
    case("k_equals_input", 2, 4, 1, 3, (5, 5), kernel=(5, 5), padding=0),
    case("batch0", 0, 3, 1, 4, (7, 9)),
]


def make_tensor(shape, layout, dtype, device):
    t = torch.randn(shape, dtype=torch.float32).to(dtype=dtype, device=device)
    if len(shape) != 4 or layout == "contiguous":
        return t
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if layout == "sliced":
        n, c, h, w = shape
        return torch.randn(n, c, h, 2 * w, dtype=torch.float32).to(dtype=dtype, device=device)[..., ::2]
    raise AssertionError(layout)


def two_convs(x, dw, pw, db, pb, c):
    return F.conv2d(F.conv2d(x, dw, db, **c.kwargs, groups=c.channels), pw, pb)


def check_against_torch(c: SepCase, dtype, device, version, layout="contiguous",
                        grad_layout=None):
    x_shape, dw_shape, pw_shape, db_shape, pb_shape = c.shapes
    operands = [make_tensor(x_shape, layout, dtype, device),
                make_tensor(dw_shape, "contiguous", dtype, device),
                make_tensor(pw_shape, "contiguous", dtype, device)]
    if c.bias:
        operands += [make_tensor(db_shape, "", dtype, device), make_tensor(pb_shape, "", dtype, device)]
    for t in operands:
        t.requires_grad_()
    x, dw, pw, *biases = operands
    db, pb = biases if c.bias else (None, None)
    native = two_convs(x, dw, pw, db, pb, c)
    grad_output = make_tensor(tuple(native.shape), grad_layout or layout, dtype, device)
    native_grads = torch.autograd.grad(native, operands, grad_output)

    exact = [t.detach().double().requires_grad_() for t in operands]
    ex, edw, epw, *eb = exact
    ref = two_convs(ex, edw, epw, *(eb if c.bias else (None, None)), c)
    ref_grads = torch.autograd.grad(ref, exact, grad_output.double())

    with cnnops.kernel_version("depthwise", version):
        out = cnnops.depthwise_separable_conv2d(x, dw, pw, db, pb, **c.kwargs)
        grads = torch.autograd.grad(out, operands, grad_output)

    rtol, atol_unit = TOLERANCES[dtype]
    kh, kw = c.kernel
    m = c.channels * c.mult
    pixels = c.batch * native.shape[2] * native.shape[3]
    lengths = {"output": kh * kw * m, "grad_input": c.mult * kh * kw * c.out_channels,
               "grad_depthwise_weight": pixels * c.out_channels,
               "grad_pointwise_weight": pixels * kh * kw, "grad_depthwise_bias": pixels * c.out_channels,
               "grad_pointwise_bias": pixels}
    results = [("output", out, ref.detach(), native)]
    results += list(zip(GRAD_NAMES, grads, ref_grads, native_grads))
    for name, actual, expected, native_result in results:
        assert actual.dtype == dtype and actual.shape == expected.shape, name
        torch.testing.assert_close(actual.to(torch.float64), expected, rtol=rtol,
                                   atol=atol_unit * math.sqrt(max(lengths[name], 1)),
                                   msg=lambda msg: f"{name}: {msg}")
        if name in ("output", "grad_input") and native_result.numel() > 0:
            for fmt in (torch.contiguous_format, torch.channels_last):
                assert (actual.is_contiguous(memory_format=fmt)
                        == native_result.is_contiguous(memory_format=fmt)), (
                    f"{name}: strides {actual.stride()}, torch's {native_result.stride()}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("c", CASES)
def test_matches_native_two_convs(c, version, dtype, device):
    check_against_torch(c, dtype, device, version)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", CASES)
def test_automatic_version_matches_native_two_convs(c, dtype, device):
    """Version 0 runs the CPU forward pass unfused, through the depthwise and 1x1 conv2d
    operators; backward stays fused."""
    check_against_torch(c, dtype, device, 0)


LAYOUT_CASES = [CASES[1], CASES[3], CASES[7]]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("layouts", [("channels_last", None), ("sliced", None),
                                     ("contiguous", "channels_last"), ("channels_last", "sliced")],
                         ids=["channels_last", "sliced", "channels_last_grad", "sliced_grad"])
@pytest.mark.parametrize("c", LAYOUT_CASES)
def test_layouts_match_native_two_convs(c, layouts, version, device):
    check_against_torch(c, torch.float32, device, version, *layouts)


# The CPU forward pass between channels-last tensors, fused per task of output rows
# (version 2 always, version 0 where the pointwise weight fits in L2): channel counts for
# each of the depthwise loops (up to two vectors, up to four, more), output channels past
# and short of a panel, pixels per task not a multiple of the micro-kernel's rows and tasks
# across images, stride 2, dilation, a pointwise weight past L2 (version 0: unfused), and
# an output large enough to be streamed past the caches.
CHANNELS_LAST_CASES = [
    case("c3_to_5", 3, 3, 1, 5, (9, 8)),
    case("c32_to_70_23x29", 2, 32, 1, 70, (23, 29)),
    case("c40_to_24_stride2", 2, 40, 1, 24, (17, 21), stride=2),
    CASES[3],
    case("c300_to_300_weight_past_l2", 1, 300, 1, 300, (6, 7)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("version", [pytest.param(0, id="v0_auto"), pytest.param(2, id="v2_fused")])
@pytest.mark.parametrize("c", CHANNELS_LAST_CASES)
def test_channels_last_cpu_forward_matches_native_two_convs(c, version, dtype):
    check_against_torch(c, dtype, "cpu", version, "channels_last")


def test_channels_last_cpu_forward_streamed_output_matches_native_two_convs():
    """2 x 64 x 128 x 128 float32 outputs: 8 MiB, written with streaming stores."""
    check_against_torch(SepCase(2, 32, 1, 64, (128, 128)), torch.float32, "cpu", 0,
                        "channels_last")


@pytest.mark.cuda
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("c", [CASES[1], CASES[4], CASES[6]])
def test_half_precision_cuda_matches_native(c, version, dtype, layout):
    check_against_torch(c, dtype, "cuda", version, layout)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("wanted", ["input", "pointwise_weight", "depthwise", "biases"])
def test_backward_when_only_some_operands_require_grad(wanted, device):
    c = SepCase(2, 4, 2, 5, (7, 6), stride=2)
    x, dw, pw, db, pb = (torch.randn(s, dtype=torch.float64, device=device) for s in c.shapes)
    names = {"input": [0], "pointwise_weight": [2], "depthwise": [1, 3], "biases": [3, 4]}[wanted]
    operands = [x, dw, pw, db, pb]
    for i in names:
        operands[i].requires_grad_()
    grad_output = torch.randn(2, 5, 4, 3, dtype=torch.float64, device=device)
    expected = torch.autograd.grad(two_convs(*operands, c), [operands[i] for i in names], grad_output)
    actual = torch.autograd.grad(cnnops.depthwise_separable_conv2d(*operands, **c.kwargs),
                                 [operands[i] for i in names], grad_output)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-11)


# ---------------------------------------------------------------------------------------
# gradcheck, opcheck, compile, determinism

GRADCHECK_CASES = [
    case("bias_pad1", 1, 2, 1, 3, (4, 5)),
    case("mult2_stride2_no_bias", 2, 2, 2, 2, (5, 4), kernel=(3, 2), stride=2, padding=(1, 0),
         bias=False),
    case("c1_dilation2", 1, 1, 1, 2, (5, 5), kernel=(2, 2), dilation=2),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("c", GRADCHECK_CASES)
def test_gradcheck_and_gradgradcheck(c, version, device):
    shapes = c.shapes if c.bias else c.shapes[:3]
    operands = [torch.randn(s, dtype=torch.float64, device=device, requires_grad=True) for s in shapes]

    def fn(x, dw, pw, *b):
        return cnnops.depthwise_separable_conv2d(x, dw, pw, *b, **c.kwargs)

    with cnnops.kernel_version("depthwise", version):
        assert torch.autograd.gradcheck(fn, operands)
        assert torch.autograd.gradgradcheck(fn, operands)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout, requires_grad", [("contiguous", False), ("contiguous", True),
                                                   ("channels_last", True)])
def test_opcheck(layout, requires_grad, device):
    x = make_tensor((2, 4, 7, 8), layout, torch.float32, device).requires_grad_(requires_grad)
    dw = torch.randn(8, 1, 3, 3, device=device, requires_grad=requires_grad)
    pw = torch.randn(5, 8, 1, 1, device=device, requires_grad=requires_grad)
    db = torch.randn(8, device=device, requires_grad=requires_grad)
    pb = torch.randn(5, device=device)
    args = ([2, 1], [1, 0, 1, 2], [1, 1])
    torch.library.opcheck(torch.ops.cnnops.depthwise_separable_conv2d, (x, dw, pw, db, pb, *args))
    torch.library.opcheck(torch.ops.cnnops.depthwise_separable_conv2d, (x, dw, pw, None, None, *args))
    grad_output = make_tensor((2, 5, 3, 9), layout, torch.float32, device)
    torch.library.opcheck(torch.ops.cnnops.depthwise_separable_conv2d_backward,
                          (grad_output, x.detach(), dw.detach(), pw.detach(), db.detach(), *args))


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph_matches_eager(device):
    torch._dynamo.reset()
    model = torch.nn.Sequential(cnn.DepthwiseSeparableConv2d(4, 6, 3, stride=2, padding=1),
                                torch.nn.ReLU(), cnn.DepthwiseSeparableConv2d(6, 5, 3, padding="same")).to(device)
    compiled = torch.compile(model, fullgraph=True, backend="inductor")
    x = torch.randn(2, 4, 9, 11, device=device).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    expected, actual = model(x), compiled(x)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(actual.square().sum(), [x, *model.parameters()])
    expected_grads = torch.autograd.grad(expected.square().sum(), [x, *model.parameters()])
    for a, e in zip(grads, expected_grads):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4)


def _forward_backward(operands, grad_output, kwargs):
    out = cnnops.depthwise_separable_conv2d(*operands, **kwargs)
    return [out.detach(), *torch.autograd.grad(out, operands, grad_output)]


@pytest.mark.parametrize("version", VERSIONS)
def test_cpu_results_are_bitwise_reproducible_across_thread_counts(version):
    c = SepCase(3, 24, 1, 40, (30, 31), stride=1)
    operands = [torch.randn(s, requires_grad=True) for s in c.shapes]
    grad_output = torch.randn(3, 40, 30, 31)
    threads = torch.get_num_threads()
    with cnnops.kernel_version("depthwise", version):
        first = _forward_backward(operands, grad_output, c.kwargs)
        try:
            torch.set_num_threads(1)
            single = _forward_backward(operands, grad_output, c.kwargs)
        finally:
            torch.set_num_threads(threads)
    for name, a, e in zip(("output", *GRAD_NAMES), single, first):
        assert torch.equal(a, e), f"{name} differs bitwise"


# ---------------------------------------------------------------------------------------
# the functional API


def test_unbatched_input_and_argument_forms():
    x, dw, pw = torch.randn(4, 9, 10), torch.randn(8, 1, 3, 3), torch.randn(6, 8, 1, 1)
    expected = F.conv2d(F.conv2d(x, dw, None, (2, 1), (1, 0), (1, 2), 4), pw)
    for kwargs in (dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
                   dict(stride=[2, 1], padding=[1, 0], dilation=[1, 2])):
        torch.testing.assert_close(cnnops.depthwise_separable_conv2d(x, dw, pw, **kwargs),
                                   expected, rtol=1e-4, atol=1e-4)
    same = cnnops.depthwise_separable_conv2d(x, dw, pw, padding="same")
    torch.testing.assert_close(same, F.conv2d(F.conv2d(x, dw, None, 1, "same", 1, 4), pw),
                               rtol=1e-4, atol=1e-4)


def test_positional_order_and_keyword_names():
    x, dw, pw = torch.randn(2, 3, 8, 8), torch.randn(3, 1, 3, 3), torch.randn(5, 3, 1, 1)
    db, pb = torch.randn(3), torch.randn(5)
    expected = F.conv2d(F.conv2d(x, dw, db, 2, 1, 1, 3), pw, pb)
    positional = cnnops.depthwise_separable_conv2d(x, dw, pw, db, pb, 2, 1, 1)
    keywords = cnnops.functional.depthwise_separable_conv2d(
        input=x, depthwise_weight=dw, pointwise_weight=pw, depthwise_bias=db,
        pointwise_bias=pb, stride=2, padding=1, dilation=1)
    torch.testing.assert_close(positional, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(keywords, positional, rtol=0, atol=0)


ERRORS = (RuntimeError, ValueError, TypeError)


def bad(name, match, x=(1, 4, 6, 6), dw=(4, 1, 3, 3), pw=(5, 4, 1, 1), db=None, pb=None,
        dtypes=None, **kwargs):
    return pytest.param(dict(input=x, depthwise_weight=dw, pointwise_weight=pw, depthwise_bias=db,
                             pointwise_bias=pb), dtypes or {}, kwargs, match, id=name)


BAD_CALLS = [
    bad("input_2d", "input", x=(4, 6)),
    bad("depthwise_weight_not_depthwise", "depthwise_weight", dw=(4, 2, 3, 3)),
    bad("depthwise_weight_not_multiple", "depthwise_weight", dw=(6, 1, 3, 3), pw=(5, 6, 1, 1)),
    bad("depthwise_weight_3d", "depthwise_weight", dw=(4, 1, 3)),
    bad("pointwise_weight_not_1x1", "pointwise_weight", pw=(5, 4, 3, 3)),
    bad("channels_do_not_chain", "chain", pw=(5, 8, 1, 1)),
    bad("depthwise_bias_shape", "depthwise_bias", db=(5,)),
    bad("pointwise_bias_shape", "pointwise_bias", pb=(4,)),
    bad("dtype_mismatch", "dtype", dtypes={"pointwise_weight": torch.float64}),
    bad("integer_input", "dtype", dtypes={"input": torch.int64, "depthwise_weight": torch.int64,
                                          "pointwise_weight": torch.int64}),
    bad("stride_0", "stride", stride=0),
    bad("padding_negative", "padding", padding=-1),
    bad("dilation_0", "dilation", dilation=0),
    bad("kernel_larger_than_input", "larger", dw=(4, 1, 9, 9)),
    bad("same_with_stride2", "same", padding="same", stride=2),
    bad("padding_word", "padding", padding="full"),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("specs, dtypes, kwargs, match", BAD_CALLS)
def test_bad_input_raises_a_clear_error(specs, dtypes, kwargs, match, device):
    tensors = {}
    for name, shape in specs.items():
        if shape is None:
            tensors[name] = None
            continue
        dtype = dtypes.get(name, torch.float32)
        tensors[name] = (torch.randn(shape, device=device).to(dtype) if dtype.is_floating_point
                         else torch.zeros(shape, dtype=dtype, device=device))
    with pytest.raises(ERRORS, match=match):
        cnnops.depthwise_separable_conv2d(**tensors, **kwargs)


def test_operator_refuses_grad_output_of_the_wrong_shape():
    x, dw, pw = torch.randn(1, 4, 6, 6), torch.randn(4, 1, 3, 3), torch.randn(5, 4, 1, 1)
    with pytest.raises(ERRORS, match="grad_output"):
        torch.ops.cnnops.depthwise_separable_conv2d_backward(
            torch.randn(1, 5, 5, 6), x, dw, pw, None, [1, 1], [1, 1, 1, 1], [1, 1])


@pytest.mark.cuda
def test_operands_on_two_devices_are_refused():
    x, dw, pw = torch.randn(1, 4, 6, 6), torch.randn(4, 1, 3, 3, device="cuda"), torch.randn(5, 4, 1, 1)
    with pytest.raises(ERRORS, match="device"):
        cnnops.depthwise_separable_conv2d(x, dw, pw)


# ---------------------------------------------------------------------------------------
# the module

MODULE_CONFIGS = [
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=1),
    dict(in_channels=3, out_channels=8, kernel_size=3, stride=2, padding=1, bias=False),
    dict(in_channels=5, out_channels=2, kernel_size=(5, 3), padding="same", dilation=2),
    dict(in_channels=4, out_channels=4, kernel_size=3, padding=2, padding_mode="reflect"),
    dict(in_channels=4, out_channels=3, kernel_size=3, padding=1, padding_mode="circular"),
    dict(in_channels=2, out_channels=3, kernel_size=3, padding=(1, 2), padding_mode="replicate",
         stride=(2, 1)),
]


def torch_pair(config):
    """The torch.nn layers the module stands for: nn.Conv2d(groups=C) then a 1x1 nn.Conv2d."""
    dw_args = {k: v for k, v in config.items() if k not in ("out_channels", "bias")}
    bias = config.get("bias", True)
    return torch.nn.Sequential(
        torch.nn.Conv2d(**{**dw_args, "out_channels": config["in_channels"]},
                        groups=config["in_channels"], bias=bias),
        torch.nn.Conv2d(config["in_channels"], config["out_channels"], 1, bias=bias))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", MODULE_CONFIGS,
                         ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_module_takes_the_weights_of_a_torch_pair(config, device):
    native = torch_pair(config).to(device)
    ours = cnn.DepthwiseSeparableConv2d(**config).to(device)
    state = {k.replace("0.", "depthwise.").replace("1.", "pointwise."): v
             for k, v in native.state_dict().items()}
    assert set(state) == set(ours.state_dict())
    ours.load_state_dict(state)
    x = torch.randn(2, config["in_channels"], 11, 13, device=device, requires_grad=True)
    y, y_ref = ours(x), native(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(y.square().sum(), [x, *ours.parameters()])
    grads_ref = torch.autograd.grad(y_ref.square().sum(), [x, *native.parameters()])
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-4)


def test_module_parameters_and_repr():
    module = cnn.DepthwiseSeparableConv2d(8, 16, 3, stride=2, padding=1)
    assert sorted(module.state_dict()) == ["depthwise.bias", "depthwise.weight", "pointwise.bias",
                                           "pointwise.weight"]
    assert module.depthwise.weight.shape == (8, 1, 3, 3)
    assert module.pointwise.weight.shape == (16, 8, 1, 1)
    assert sorted(cnn.DepthwiseSeparableConv2d(8, 16, 3, bias=False).state_dict()) == [
        "depthwise.weight", "pointwise.weight"]
    assert module.extra_repr() == "8, 16, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1)"
    double = cnn.DepthwiseSeparableConv2d(2, 3, 3, dtype=torch.float64)
    assert double.depthwise.weight.dtype == torch.float64
    assert double(torch.randn(1, 2, 5, 5, dtype=torch.float64)).shape == (1, 3, 3, 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(in_channels=0, out_channels=4, kernel_size=3), "in_channels"),
    (dict(in_channels=4, out_channels=4, kernel_size=0), "kernel_size"),
    (dict(in_channels=4, out_channels=4, kernel_size=3, stride=0), "stride"),
    (dict(in_channels=4, out_channels=4, kernel_size=3, padding=-1), "padding"),
    (dict(in_channels=4, out_channels=4, kernel_size=3, padding_mode="mirror"), "padding_mode"),
])
def test_module_refuses_bad_construction(kwargs, match):
    with pytest.raises(ERRORS, match=match):
        cnn.DepthwiseSeparableConv2d(**kwargs)


def _operators_run_by(fn):
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.add(str(func.overloadpacket))
            return func(*args, **(kwargs or {}))

    with Record() as record:
        fn()
    return record.names


def test_first_order_backward_is_the_fused_operator_and_higher_orders_compose():
    c = SepCase(2, 3, 1, 4, (6, 7))
    operands = [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in c.shapes]
    out = cnnops.depthwise_separable_conv2d(*operands, **c.kwargs)
    grad_output = torch.randn_like(out)
    first = _operators_run_by(lambda: torch.autograd.grad(out, operands, grad_output,
                                                          retain_graph=True))
    assert "cnnops.depthwise_separable_conv2d_backward" in first
    second = _operators_run_by(lambda: torch.autograd.grad(out, operands, grad_output,
                                                           create_graph=True))
    assert "cnnops.depthwise_separable_conv2d_backward" not in second
    assert {"cnnops.conv2d_grad_input", "cnnops.conv2d_grad_weight"} <= second
