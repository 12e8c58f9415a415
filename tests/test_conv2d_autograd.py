"""conv2d's autograd: float64 gradcheck / gradgradcheck, torch.library.opcheck of the three
operators, torch.compile(fullgraph=True) against eager, and deterministic CPU backward."""

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.testing import CompileCounterWithBackend

import cnnops

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
VERSIONS = [pytest.param(1, id="v1_reference"), pytest.param(2, id="v2_fast"),
            pytest.param(3, id="v3_winograd"), pytest.param(4, id="v4_direct"),
            pytest.param(5, id="v5_tapwise")]


def conv_case(name, input_shape, weight_shape, bias=False, input_layout="contiguous", **kwargs):
    return pytest.param(input_shape, weight_shape, bias, input_layout, kwargs, id=name)


def make_operands(input_shape, weight_shape, bias, input_layout="contiguous",
                  dtype=torch.float64, device="cpu"):
    x = torch.randn(input_shape, dtype=dtype, device=device)
    if input_layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(weight_shape, dtype=dtype, device=device)
    b = torch.randn(weight_shape[0], dtype=dtype, device=device) if bias else None
    return x, w, b


# Tiny on purpose: gradgradcheck perturbs every element of every operand one at a time.
GRADCHECK_CASES = [
    conv_case("1x1x1", (1, 1, 1, 1), (1, 1, 1, 1), bias=True),
    conv_case("pad1_bias", (1, 2, 4, 5), (3, 2, 2, 3), bias=True, padding=1),
    conv_case("stride2", (2, 2, 5, 6), (2, 2, 3, 3), bias=True, stride=2, padding=1),
    conv_case("stride2x3_no_bias", (1, 3, 7, 8), (2, 3, 2, 2), stride=(2, 3)),
    conv_case("dilation2", (1, 2, 6, 5), (2, 2, 2, 2), dilation=2, padding=(1, 0)),
    conv_case("groups2", (1, 4, 4, 5), (4, 2, 3, 3), bias=True, groups=2, padding=1),
    conv_case("depthwise_stride2", (1, 3, 5, 4), (3, 1, 3, 2), groups=3, stride=2, padding=(1, 0)),
    conv_case("same_even_kernel", (1, 2, 4, 5), (3, 2, 2, 3), padding="same"),
    conv_case("same_dilation3x1", (1, 2, 5, 5), (2, 2, 2, 3), bias=True, padding="same",
              dilation=(3, 1)),
    conv_case("unbatched", (2, 4, 5), (3, 2, 3, 3), bias=True, padding=1),
    conv_case("channels_last_input", (2, 3, 4, 4), (2, 3, 2, 2), bias=True,
              input_layout="channels_last", padding=1, stride=(1, 2)),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("input_shape, weight_shape, bias, input_layout, kwargs", GRADCHECK_CASES)
def test_gradcheck(input_shape, weight_shape, bias, input_layout, kwargs, version, device):
    operands = [t.requires_grad_()
                for t in make_operands(input_shape, weight_shape, bias, input_layout,
                                       device=device)
                if t is not None]

    def fn(*tensors):
        x, w, *b = tensors
        return cnnops.conv2d(x, w, b[0] if b else None, **kwargs)

    with cnnops.kernel_version("conv2d", version):
        assert torch.autograd.gradcheck(fn, operands)
        assert torch.autograd.gradgradcheck(fn, operands)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("padding", [[2, 0, 1, 3], [0, 1, 2, 0]], ids=["t2b0l1r3", "t0b1l2r0"])
def test_gradcheck_operator_with_asymmetric_padding(padding, version):
    x, w, b = make_operands((1, 4, 5, 4), (2, 2, 2, 3), bias=True)
    operands = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_())

    def fn(x, w, b):
        return torch.ops.cnnops.conv2d(x, w, b, [2, 1], padding, [1, 2], 2)

    with cnnops.kernel_version("conv2d", version):
        assert torch.autograd.gradcheck(fn, operands)
        assert torch.autograd.gradgradcheck(fn, operands)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("wanted", ["input", "weight", "bias", "input_and_bias"])
def test_backward_when_only_some_operands_require_grad(wanted, version):
    x, w, b = make_operands((2, 4, 7, 6), (6, 2, 3, 3), bias=True)
    kwargs = dict(stride=2, padding=1, groups=2)
    names = wanted.split("_and_")
    operands = dict(input=x, weight=w, bias=b)
    for name in names:
        operands[name].requires_grad_()
    grad_output = torch.randn(2, 6, 4, 3, dtype=torch.float64)
    wanted = [operands[n] for n in names]
    expected = torch.autograd.grad(F.conv2d(x, w, b, **kwargs), wanted, grad_output)
    with cnnops.kernel_version("conv2d", version):
        out = cnnops.conv2d(x, w, b, **kwargs)
        actual = torch.autograd.grad(out, wanted, grad_output)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-11)


# ---------------------------------------------------------------------------------------
# opcheck: schema, fake kernel, autograd registration and AOT dispatch of each operator


def out_hw(input_size, weight_size, stride, padding, dilation):
    return [
        (input_size[2 + d] + padding[2 * d] + padding[2 * d + 1]
         - dilation[d] * (weight_size[2 + d] - 1) - 1) // stride[d] + 1
        for d in range(2)
    ]


# (input size, weight size, bias, stride, padding [t, b, l, r], dilation, groups,
#  layout of the tensor operands, whether they require grad)
OPCHECK_GEOMETRIES = [
    pytest.param((2, 3, 7, 9), (4, 3, 3, 3), True, [1, 1], [1, 1, 1, 1], [1, 1], 1,
                 "contiguous", False, id="k3_pad1"),
    pytest.param((2, 3, 7, 9), (4, 3, 3, 3), True, [1, 1], [1, 1, 1, 1], [1, 1], 1,
                 "contiguous", True, id="k3_pad1_requires_grad"),
    pytest.param((1, 4, 6, 5), (6, 2, 2, 3), False, [2, 1], [0, 1, 2, 0], [1, 2], 2,
                 "channels_last", True, id="asymmetric_groups2_channels_last_requires_grad"),
    pytest.param((2, 5, 5, 6), (5, 1, 3, 3), True, [1, 2], [1, 1, 1, 1], [1, 1], 5,
                 "channels_last", False, id="depthwise_channels_last"),
    pytest.param((0, 3, 5, 5), (2, 3, 3, 3), True, [1, 1], [0, 0, 0, 0], [1, 1], 1,
                 "contiguous", True, id="batch0_requires_grad"),
]
OPCHECK_ARGNAMES = ("input_size, weight_size, bias, stride, padding, dilation, groups, layout, "
                    "requires_grad")


def _opcheck_tensor(shape, layout, requires_grad, device):
    t = torch.randn(shape, device=device)
    if layout == "channels_last" and len(shape) == 4:
        t = t.contiguous(memory_format=torch.channels_last)
    return t.requires_grad_(requires_grad)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(OPCHECK_ARGNAMES, OPCHECK_GEOMETRIES)
def test_opcheck_conv2d(input_size, weight_size, bias, stride, padding, dilation, groups, layout,
                        requires_grad, device):
    x = _opcheck_tensor(input_size, layout, requires_grad, device)
    w = _opcheck_tensor(weight_size, layout, requires_grad, device)
    b = _opcheck_tensor((weight_size[0],), layout, requires_grad, device) if bias else None
    torch.library.opcheck(torch.ops.cnnops.conv2d, (x, w, b, stride, padding, dilation, groups))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(OPCHECK_ARGNAMES, OPCHECK_GEOMETRIES)
def test_opcheck_conv2d_grad_input(input_size, weight_size, bias, stride, padding, dilation, groups,
                                   layout, requires_grad, device):
    grad_output_size = (input_size[0], weight_size[0],
                        *out_hw(input_size, weight_size, stride, padding, dilation))
    grad_output = _opcheck_tensor(grad_output_size, layout, requires_grad, device)
    w = _opcheck_tensor(weight_size, layout, requires_grad, device)
    torch.library.opcheck(torch.ops.cnnops.conv2d_grad_input,
                          (grad_output, w, list(input_size), stride, padding, dilation, groups))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(OPCHECK_ARGNAMES, OPCHECK_GEOMETRIES)
def test_opcheck_conv2d_grad_weight(input_size, weight_size, bias, stride, padding, dilation,
                                    groups, layout, requires_grad, device):
    grad_output_size = (input_size[0], weight_size[0],
                        *out_hw(input_size, weight_size, stride, padding, dilation))
    grad_output = _opcheck_tensor(grad_output_size, layout, requires_grad, device)
    x = _opcheck_tensor(input_size, layout, requires_grad, device)
    torch.library.opcheck(torch.ops.cnnops.conv2d_grad_weight,
                          (grad_output, x, list(weight_size), stride, padding, dilation, groups))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(OPCHECK_ARGNAMES, OPCHECK_GEOMETRIES)
def test_opcheck_conv2d_backward(input_size, weight_size, bias, stride, padding, dilation, groups,
                                 layout, requires_grad, device):
    grad_output_size = (input_size[0], weight_size[0],
                        *out_hw(input_size, weight_size, stride, padding, dilation))
    grad_output = _opcheck_tensor(grad_output_size, layout, requires_grad, device)
    x = _opcheck_tensor(input_size, layout, requires_grad, device)
    w = _opcheck_tensor(weight_size, layout, requires_grad, device)
    torch.library.opcheck(torch.ops.cnnops.conv2d_backward,
                          (grad_output, x, w, stride, padding, dilation, groups, bias))


# conv2d_backward: the two adjoint operators and the bias gradient in one call, which the
# first-order backward takes. On depthwise layers with channel multiplier 1 in NCHW whose planes are
# small (7x7 and 14x14 at stride 1, a 3x3 kernel at stride 2 over rows of any width) or read in
# place (3x3, stride 1, padding 1, 24 rows or more), and on 3x3 stride-1 layers with a channel
# multiplier over rows of a vector or more, the CPU fuses them into one pass whose
# grad_input and grad_weight are bitwise the operators' own; other shapes (a dense convolution, a
# channels-last depthwise one, or one of multiplier 2 on 7-wide rows) run the operators in turn.
BACKWARD_CASES = [
    pytest.param((8, 40, 7, 7), (40, 1, 3, 3), 1, 1, 40, "contiguous", id="depthwise_7x7"),
    pytest.param((3, 24, 14, 14), (24, 1, 3, 3), 1, 1, 24, "contiguous", id="depthwise_14x14"),
    pytest.param((2, 16, 14, 19), (16, 1, 3, 3), 2, 1, 16, "contiguous",
                 id="depthwise_stride2_14x19"),
    pytest.param((3, 5, 24, 25), (5, 1, 3, 3), 1, 1, 5, "contiguous", id="depthwise_in_place"),
    pytest.param((2, 3, 30, 40), (3, 1, 3, 3), 1, 1, 3, "contiguous",
                 id="depthwise_in_place_30x40"),
    pytest.param((3, 40, 24, 26), (40, 1, 3, 3), 1, 1, 40, "contiguous",
                 id="depthwise_in_place_whole_batch"),  # one chunk of 3 images per channel
    pytest.param((2, 6, 9, 8), (6, 1, 5, 5), 1, 2, 6, "contiguous", id="depthwise_5x5_pad2"),
    pytest.param((2, 6, 7, 7), (12, 1, 3, 3), 1, 1, 6, "contiguous", id="depthwise_multiplier2"),
    pytest.param((2, 1, 28, 28), (32, 1, 3, 3), 1, 1, 1, "contiguous",
                 id="multiplier_planes_1_to_32"),
    pytest.param((3, 2, 17, 16), (6, 1, 3, 3), 1, 1, 2, "contiguous", id="multiplier_planes_3"),
    pytest.param((2, 12, 7, 7), (12, 1, 3, 3), 1, 1, 12, "channels_last",
                 id="depthwise_channels_last"),
    pytest.param((2, 5, 9, 9), (7, 5, 3, 3), 1, 1, 1, "contiguous", id="dense"),
]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("input_size, weight_size, stride, pad, groups, layout", BACKWARD_CASES)
def test_conv2d_backward_matches_the_operators(input_size, weight_size, stride, pad, groups,
                                               layout, dtype, bias):
    memory_format = (torch.channels_last if layout == "channels_last"
                     else torch.contiguous_format)
    x = torch.randn(input_size, dtype=dtype).contiguous(memory_format=memory_format)
    w = torch.randn(weight_size, dtype=dtype)
    y = torch.ops.cnnops.conv2d(x, w, None, [stride] * 2, [pad] * 4, [1, 1], groups)
    dy = torch.randn(y.shape, dtype=dtype).contiguous(memory_format=memory_format)
    args = ([stride] * 2, [pad] * 4, [1, 1], groups)
    grad_input, grad_weight, grad_bias = torch.ops.cnnops.conv2d_backward(dy, x, w, *args, bias)
    expected_input = torch.ops.cnnops.conv2d_grad_input(dy, w, list(x.shape), *args)
    expected_weight = torch.ops.cnnops.conv2d_grad_weight(dy, x, list(w.shape), *args)
    assert torch.equal(grad_input, expected_input)
    assert grad_input.stride() == expected_input.stride()
    assert torch.equal(grad_weight, expected_weight)
    if bias:  # float32: sums of up to 2400 terms, in another order than torch's
        tolerance = {} if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(grad_bias, dy.double().sum((0, 2, 3)).to(dtype), **tolerance)
    else:
        assert grad_bias.shape == (0,)
    # and the autograd formula that calls it gives torch's gradients
    leaves = [t.clone().requires_grad_() for t in (x, w)]
    b = torch.randn(weight_size[0], dtype=dtype, requires_grad=True) if bias else None
    wanted = leaves + ([b] if bias else [])
    ours = torch.autograd.grad(cnnops.conv2d(*leaves, b, stride=stride, padding=pad,
                                             groups=groups), wanted, dy)
    theirs = torch.autograd.grad(F.conv2d(*leaves, b, stride=stride, padding=pad,
                                          groups=groups), wanted, dy)
    tolerance = {} if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    for a, e in zip(ours, theirs):
        torch.testing.assert_close(a, e, **tolerance)


# From 8 MiB on, the fused passes write grad_input past the caches (non-temporal stores):
# still bitwise the operators' results, at stride 1 (planes read in place) and 2 (the
# small-plane kernels' stride-2 rows). The bias gradient sums up to 131072 terms per channel,
# against a float64 sum.
@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_backward_streamed_matches_the_operators(stride):
    x, w = torch.randn(2, 16, 256, 256), torch.randn(16, 1, 3, 3)
    dy = torch.randn(2, 16, 256 // stride, 256 // stride)
    args = ([stride, stride], [1, 1, 1, 1], [1, 1], 16)
    grad_input, grad_weight, grad_bias = torch.ops.cnnops.conv2d_backward(dy, x, w, *args, True)
    assert torch.equal(grad_input,
                       torch.ops.cnnops.conv2d_grad_input(dy, w, list(x.shape), *args))
    assert torch.equal(grad_weight,
                       torch.ops.cnnops.conv2d_grad_weight(dy, x, list(w.shape), *args))
    torch.testing.assert_close(grad_bias, dy.double().sum((0, 2, 3)).float(), rtol=1e-5,
                               atol=1e-3)


# conv2d_backward is differentiable too (its results are the two adjoints' and a sum), on the
# fused depthwise planes as elsewhere.
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("input_size, weight_size, stride, pad, groups", [
    pytest.param((2, 3, 7, 7), (3, 1, 3, 3), 1, 1, 3, id="depthwise_7x7"),
    pytest.param((2, 4, 9, 11), (4, 1, 3, 3), 2, 1, 4, id="depthwise_stride2_9x11"),
    pytest.param((2, 3, 6, 5), (4, 3, 3, 3), 1, 1, 1, id="dense"),
])
def test_conv2d_backward_gradcheck(input_size, weight_size, stride, pad, groups, bias):
    x = torch.randn(input_size, dtype=torch.float64, requires_grad=True)
    w = torch.randn(weight_size, dtype=torch.float64, requires_grad=True)
    args = ([stride] * 2, [pad] * 4, [1, 1], groups)
    y = torch.ops.cnnops.conv2d(x, w, None, *args)
    dy = torch.randn(y.shape, dtype=torch.float64, requires_grad=True)

    def backward(dy, x, w):
        return torch.ops.cnnops.conv2d_backward(dy, x, w, *args, bias)

    assert torch.autograd.gradcheck(backward, (dy, x, w))
    assert torch.autograd.gradgradcheck(backward, (dy, x, w))


# ---------------------------------------------------------------------------------------
# torch.compile


def two_convs(x, w1, b1, w2):
    y = torch.relu(cnnops.conv2d(x, w1, b1, stride=2, padding=1))
    return cnnops.conv2d(y, w2, padding="same", groups=2) * 0.5


def _compile_operands(input_shape, memory_format=torch.contiguous_format, device="cpu"):
    x = torch.randn(input_shape, device=device).contiguous(memory_format=memory_format)
    w1 = torch.randn(6, 3, 3, 3, device=device)
    b1 = torch.randn(6, device=device)
    w2 = torch.randn(4, 3, 2, 2, device=device)  # even kernel: 'same' pads bottom/right
    return [t.requires_grad_() for t in (x, w1, b1, w2)]


def _assert_compiled_matches_eager(compiled, operands):
    expected = two_convs(*operands)
    actual = compiled(*operands)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    grad_output = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, operands, grad_output)
    actual_grads = torch.autograd.grad(actual, operands, grad_output)
    for name, a, e in zip(("x", "w1", "b1", "w2"), actual_grads, expected_grads):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5, msg=lambda m: f"grad of {name}: {m}")


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last],
                         ids=["contiguous", "channels_last"])
def test_compile_fullgraph_matches_eager(memory_format, device):
    # inductor checks each operator's real output strides against its fake kernel's
    torch._dynamo.reset()
    compiled = torch.compile(two_convs, fullgraph=True, backend="inductor")
    operands = _compile_operands((2, 3, 9, 11), memory_format, device)
    _assert_compiled_matches_eager(compiled, operands)


@pytest.mark.slow
def test_compile_dynamic_shapes_do_not_recompile():
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("inductor")
    compiled = torch.compile(two_convs, fullgraph=True, dynamic=True, backend=counter)
    # sizes unlike any weight size, so duck sizing ties no dimension of x to a weight's
    for input_shape in [(5, 3, 10, 11), (7, 3, 13, 9)]:
        _assert_compiled_matches_eager(compiled, _compile_operands(input_shape))
    assert counter.frame_count == 1


# ---------------------------------------------------------------------------------------
# determinism


def _forward_backward(x, w, b, grad_output, version):
    with cnnops.kernel_version("conv2d", version):
        out = cnnops.conv2d(x, w, b, padding=1)
        return [out.detach(), *torch.autograd.grad(out, (x, w, b), grad_output)]


@pytest.mark.parametrize("version", VERSIONS)
def test_cpu_backward_is_bitwise_deterministic(version):
    # big enough that every kernel splits the work across threads
    x = torch.randn(2, 19, 33, 35, requires_grad=True)
    w = torch.randn(37, 19, 3, 3, requires_grad=True)
    b = torch.randn(37, requires_grad=True)
    grad_output = torch.randn(2, 37, 33, 35)
    first = _forward_backward(x, w, b, grad_output, version)
    threads = torch.get_num_threads()
    try:
        runs = {"again": _forward_backward(x, w, b, grad_output, version)}
        torch.set_num_threads(1)
        runs["1 thread"] = _forward_backward(x, w, b, grad_output, version)
        torch.set_num_threads(2)
        runs["2 threads"] = _forward_backward(x, w, b, grad_output, version)
    finally:
        torch.set_num_threads(threads)
    for run, results in runs.items():
        for name, a, e in zip(("output", "grad_input", "grad_weight", "grad_bias"), results, first):
            assert torch.equal(a, e), f"{name} differs bitwise ({run})"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("stride", [1, 2])
def test_channels_last_1x1_grad_weight_matches_float64_and_thread_counts(stride, version):
    """Channels-last 1x1 layers take their own grad_weight kernel (dY read in place, the
    pixels cut into ranges summed into copies of dW): 9800 output pixels make three ranges,
    40 output channels a partial block of the micro-kernel's rows and 24 input channels a
    partial panel; the result must match float64 and not depend on the thread count."""
    cl = torch.channels_last
    x = torch.randn(2, 24, 70 * stride, 70 * stride).contiguous(memory_format=cl)
    grad_output = torch.randn(2, 40, 70, 70).contiguous(memory_format=cl)
    args = ([40, 24, 1, 1], [stride, stride], [0, 0, 0, 0], [1, 1], 1)
    ref = torch.ops.aten.convolution_backward(
        grad_output.double(), x.double(), torch.zeros(40, 24, 1, 1, dtype=torch.float64), None,
        [stride, stride], [0, 0], [1, 1], False, [0, 0], 1, [False, True, False])[1]
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            with cnnops.kernel_version("conv2d", version):
                results.append(torch.ops.cnnops.conv2d_grad_weight(grad_output, x, *args))
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(results[0].double(), ref, rtol=1e-5, atol=1e-3)
    assert torch.equal(results[0], results[1])


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("channels", [16, 17, 40])
def test_nchw_1x1_grad_weight_runs_and_panels_match_float64(channels, version):
    """NCHW 1x1 grad_weight packs X^T from whole rows of the input (on AVX2, sixteen rows
    transposed 8 x 8 in registers): images of 7 x 5 pixels make runs that are not a multiple
    of 8 columns and tiles that span images, and 17 or 40 input channels a partial panel."""
    x = torch.randn(3, channels, 7, 5)
    grad_output = torch.randn(3, 33, 7, 5)
    ref = torch.ops.aten.convolution_backward(
        grad_output.double(), x.double(), torch.zeros(33, channels, 1, 1, dtype=torch.float64),
        None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, False])[1]
    with cnnops.kernel_version("conv2d", version):
        ours = torch.ops.cnnops.conv2d_grad_weight(grad_output, x, [33, channels, 1, 1], [1, 1],
                                                   [0, 0, 0, 0], [1, 1], 1)
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-4)
