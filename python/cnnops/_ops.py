"""Loads the compiled library and registers, beside each other, the fake kernel and the
autograd formula of every operator in ``torch.ops.cnnops``.

The backward of each operator is written in terms of cnnops operators that are themselves
differentiable, which is what makes double backward work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch._prims_common import suggest_memory_format

_REBUILD = "pip install --no-build-isolation -e ."


def _built_torch_version() -> str | None:
    try:
        from ._build_config import BUILD_CONFIG
    except ImportError:
        return None
    return BUILD_CONFIG.get("torch_version")


def _load_library():
    """Imports cnnops._C, turning a build made for another torch into a clear message."""
    built = _built_torch_version()
    if built is not None and built != torch.__version__:
        raise ImportError(
            f"cnnops was compiled against torch {built}, but torch {torch.__version__} is "
            f"installed. Rebuild it against this torch: {_REBUILD}"
        )
    try:
        from . import _C
    except ImportError as error:
        if "undefined symbol" in str(error) or "version" in str(error):
            raise ImportError(
                f"cnnops' compiled library does not match the installed torch "
                f"{torch.__version__} ({error}). Rebuild it: {_REBUILD}"
            ) from error
        raise ImportError(
            f"cnnops' compiled library (cnnops._C) could not be imported: {error}. "
            f"Build it with: {_REBUILD}"
        ) from error
    if _C.torch_version() != torch.__version__:
        raise ImportError(
            f"cnnops was compiled against torch {_C.torch_version()}, but torch "
            f"{torch.__version__} is installed. Rebuild it against this torch: {_REBUILD}"
        )
    return _C


_C = _load_library()
ops = torch.ops.cnnops


@contextlib.contextmanager
def kernel_version(family: str, version: int) -> Iterator[None]:
    """Pins the numbered kernel version of an op family for the duration of a ``with``.

    ``version`` 0 is automatic (the fastest kernel that applies), 1 the plain reference
    kernel, 2 and up the fast versions listed at the top of each kernel file. The setting is
    process-wide, not per thread.
    """
    previous = _C.get_kernel_version(family)
    _C.set_kernel_version(family, version)
    try:
        yield
    finally:
        _C.set_kernel_version(family, previous)


# --------------------------------------------------------------------------------------
# conv2d: shape rules shared by the fake kernels (they mirror csrc/common/conv2d_params.cpp)


def _conv_memory_format(input: torch.Tensor, weight: torch.Tensor) -> torch.memory_format:
    """torch's rule for a convolution's result: channels_last when either operand is."""
    if torch.channels_last in (suggest_memory_format(input), suggest_memory_format(weight)):
        return torch.channels_last
    return torch.contiguous_format


def _conv2d_output_hw(op, input_size, weight_size, stride, padding, dilation, groups):
    torch._check(len(stride) == 2 and len(dilation) == 2 and len(padding) == 4,
                 lambda: f"{op}: 'stride' and 'dilation' need 2 values and 'padding' 4")
    torch._check(groups >= 1, lambda: f"{op}: argument 'groups' must be >= 1, got {groups}")
    torch._check(input_size[1] == weight_size[1] * groups,
                 lambda: f"{op}: input has {input_size[1]} channels, but weight of shape "
                 f"{tuple(weight_size)} with groups={groups} expects {weight_size[1] * groups}")
    torch._check(weight_size[0] % groups == 0,
                 lambda: f"{op}: out channels must be divisible by 'groups' ({groups})")
    out = []
    for dim in range(2):
        size = input_size[2 + dim] + padding[2 * dim] + padding[2 * dim + 1]
        out.append((size - dilation[dim] * (weight_size[2 + dim] - 1) - 1) // stride[dim] + 1)
    torch._check(out[0] >= 1 and out[1] >= 1,
                 lambda: f"{op}: the kernel is larger than the padded input")
    return out


def _check_operands(op: str, first: torch.Tensor, *others: torch.Tensor | None) -> None:
    for other in others:
        if other is None:
            continue
        torch._check(other.dtype == first.dtype and other.device == first.device,
                     lambda: f"{op}: operands must share one dtype and device")


@torch.library.register_fake("cnnops::conv2d")
def _conv2d_fake(input, weight, bias, stride, padding, dilation, groups):
    _check_operands("cnnops.conv2d", input, weight, bias)
    torch._check(input.dim() == 4 and weight.dim() == 4,
                 lambda: "cnnops.conv2d: 'input' and 'weight' must be 4-D")
    out_h, out_w = _conv2d_output_hw("cnnops.conv2d", input.shape, weight.shape, stride,
                                     padding, dilation, groups)
    return torch.empty((input.shape[0], weight.shape[0], out_h, out_w), dtype=input.dtype,
                       device=input.device, memory_format=_conv_memory_format(input, weight))


@torch.library.register_fake("cnnops::conv2d_bias_relu")
def _conv2d_bias_relu_fake(input, weight, bias, stride, padding, dilation, groups):
    return _conv2d_fake(input, weight, bias, stride, padding, dilation, groups)


@torch.library.register_fake("cnnops::conv2d_grad_input")
def _conv2d_grad_input_fake(grad_output, weight, input_size, stride, padding, dilation, groups):
    _check_operands("cnnops.conv2d_grad_input", grad_output, weight)
    _conv2d_output_hw("cnnops.conv2d_grad_input", input_size, weight.shape, stride, padding,
                      dilation, groups)
    return torch.empty(input_size, dtype=grad_output.dtype, device=grad_output.device,
                       memory_format=_conv_memory_format(grad_output, weight))


@torch.library.register_fake("cnnops::conv2d_grad_weight")
def _conv2d_grad_weight_fake(grad_output, input, weight_size, stride, padding, dilation, groups):
    _check_operands("cnnops.conv2d_grad_weight", grad_output, input)
    _conv2d_output_hw("cnnops.conv2d_grad_weight", input.shape, weight_size, stride, padding,
                      dilation, groups)
    return torch.empty(weight_size, dtype=grad_output.dtype, device=grad_output.device,
                       memory_format=_conv_memory_format(grad_output, input))


# --------------------------------------------------------------------------------------
# conv2d: autograd. conv2d is bilinear in (input, weight); each backward operator is the
# adjoint of conv2d in one argument, so their own gradients are conv2d and its adjoints.


def _conv2d_setup_context(ctx, inputs, output):
    input, weight, bias, *conv_args = inputs
    ctx.save_for_backward(input, weight)
    ctx.conv_args = conv_args
    ctx.has_bias = bias is not None


def _conv2d_backward(ctx, grad):
    input, weight = ctx.saved_tensors
    grad_input = grad_weight = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_input = ops.conv2d_grad_input(grad, weight, input.shape, *ctx.conv_args)
    if ctx.needs_input_grad[1]:
        grad_weight = ops.conv2d_grad_weight(grad, input, weight.shape, *ctx.conv_args)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_bias = grad.sum((0, 2, 3))
    return grad_input, grad_weight, grad_bias, None, None, None, None


def _conv2d_grad_input_setup_context(ctx, inputs, output):
    grad_output, weight, _input_size, *conv_args = inputs
    ctx.save_for_backward(grad_output, weight)
    ctx.conv_args = conv_args


def _conv2d_grad_input_backward(ctx, grad):
    grad_output, weight = ctx.saved_tensors
    d_grad_output = d_weight = None
    if ctx.needs_input_grad[0]:
        d_grad_output = ops.conv2d(grad, weight, None, *ctx.conv_args)
    if ctx.needs_input_grad[1]:
        d_weight = ops.conv2d_grad_weight(grad_output, grad, weight.shape, *ctx.conv_args)
    return d_grad_output, d_weight, None, None, None, None, None


def _conv2d_grad_weight_setup_context(ctx, inputs, output):
    grad_output, input, _weight_size, *conv_args = inputs
    ctx.save_for_backward(grad_output, input)
    ctx.conv_args = conv_args


def _conv2d_grad_weight_backward(ctx, grad):
    grad_output, input = ctx.saved_tensors
    d_grad_output = d_input = None
    if ctx.needs_input_grad[0]:
        d_grad_output = ops.conv2d(input, grad, None, *ctx.conv_args)
    if ctx.needs_input_grad[1]:
        d_input = ops.conv2d_grad_input(grad_output, grad, input.shape, *ctx.conv_args)
    return d_grad_output, d_input, None, None, None, None, None


torch.library.register_autograd(
    "cnnops::conv2d", _conv2d_backward, setup_context=_conv2d_setup_context)
torch.library.register_autograd(
    "cnnops::conv2d_grad_input", _conv2d_grad_input_backward,
    setup_context=_conv2d_grad_input_setup_context)
torch.library.register_autograd(
    "cnnops::conv2d_grad_weight", _conv2d_grad_weight_backward,
    setup_context=_conv2d_grad_weight_setup_context)


def _inference_only(ctx, inputs, output):
    raise RuntimeError(
        "cnnops.conv2d_bias_relu is inference-only and records no gradients; call it under "
        "torch.no_grad() or torch.inference_mode() (cnnops.fuse does), or train with "
        "cnnops.conv2d followed by relu")


def _no_backward(ctx, grad):
    raise AssertionError("unreachable: conv2d_bias_relu refuses to record gradients")


torch.library.register_autograd(
    "cnnops::conv2d_bias_relu", _no_backward, setup_context=_inference_only)

# --------------------------------------------------------------------------------------
# pooling: shape rules shared by the fake kernels (they mirror csrc/common/pool_params.cpp)


def _pool_memory_format(t: torch.Tensor) -> torch.memory_format:
    """torch's rule for a pooling result: the input's suggested memory format."""
    return suggest_memory_format(t) if t.dim() == 4 else torch.contiguous_format


def _pool_out_size(size, kernel, pad, stride, dilation, ceil_mode):
    span = size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = span // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1  # the last window must start inside the input or its left padding
    return out


def _check_pool_input(op: str, input: torch.Tensor) -> None:
    torch._check(input.dim() == 4, lambda: f"{op}: argument 'input' must be 4-D (N, C, H, W)")
    torch._check(input.dtype.is_floating_point,
                 lambda: f"{op}: argument 'input' must be floating point, got {input.dtype}")


def _pool2d_output_size(op, input, kernel_size, stride, padding, dilation, ceil_mode):
    _check_pool_input(op, input)
    torch._check(all(len(v) == 2 for v in (kernel_size, stride, padding, dilation)),
                 lambda: f"{op}: kernel_size, stride, padding and dilation need 2 values each")
    out = [_pool_out_size(input.shape[2 + d], kernel_size[d], padding[d], stride[d],
                          dilation[d], ceil_mode) for d in range(2)]
    torch._check(out[0] >= 1 and out[1] >= 1,
                 lambda: f"{op}: argument 'kernel_size' is larger than the padded input")
    return (input.shape[0], input.shape[1], out[0], out[1])


def _pool_empty(size, like: torch.Tensor, format_of: torch.Tensor, dtype=None) -> torch.Tensor:
    return torch.empty(size, dtype=dtype or like.dtype, device=like.device,
                       memory_format=_pool_memory_format(format_of))


@torch.library.register_fake("cnnops::max_pool2d_with_indices")
def _max_pool2d_with_indices_fake(input, kernel_size, stride, padding, dilation, ceil_mode):
    size = _pool2d_output_size("cnnops.max_pool2d", input, kernel_size, stride, padding,
                               dilation, ceil_mode)
    return _pool_empty(size, input, input), _pool_empty(size, input, input, torch.int64)


@torch.library.register_fake("cnnops::adaptive_max_pool2d")
def _adaptive_max_pool2d_fake(input, output_size):
    _check_pool_input("cnnops.adaptive_max_pool2d", input)
    size = (input.shape[0], input.shape[1], *output_size)
    return _pool_empty(size, input, input), _pool_empty(size, input, input, torch.int64)


@torch.library.register_fake("cnnops::max_pool2d_grad_input")
def _max_pool2d_grad_input_fake(grad_output, indices, input):
    _check_operands("cnnops.max_pool2d_grad_input", input, grad_output)
    torch._check(grad_output.shape == indices.shape,
                 lambda: "cnnops.max_pool2d_grad_input: 'grad_output' and 'indices' differ in shape")
    return _pool_empty(input.shape, input, input)


@torch.library.register_fake("cnnops::max_pool2d_gather")
def _max_pool2d_gather_fake(input, indices):
    torch._check(indices.dtype == torch.int64,
                 lambda: "cnnops.max_pool2d_gather: argument 'indices' must be int64")
    return _pool_empty(indices.shape, input, indices)


@torch.library.register_fake("cnnops::avg_pool2d")
def _avg_pool2d_fake(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override):
    size = _pool2d_output_size("cnnops.avg_pool2d", input, kernel_size, stride, padding,
                               [1, 1], ceil_mode)
    return _pool_empty(size, input, input)


@torch.library.register_fake("cnnops::avg_pool2d_grad_input")
def _avg_pool2d_grad_input_fake(grad_output, input, kernel_size, stride, padding, ceil_mode,
                                count_include_pad, divisor_override):
    _check_operands("cnnops.avg_pool2d_grad_input", input, grad_output)
    return _pool_empty(input.shape, input, input)


@torch.library.register_fake("cnnops::adaptive_avg_pool2d")
def _adaptive_avg_pool2d_fake(input, output_size):
    _check_pool_input("cnnops.adaptive_avg_pool2d", input)
    return _pool_empty((input.shape[0], input.shape[1], *output_size), input, input)


@torch.library.register_fake("cnnops::adaptive_avg_pool2d_grad_input")
def _adaptive_avg_pool2d_grad_input_fake(grad_output, input):
    _check_operands("cnnops.adaptive_avg_pool2d_grad_input", input, grad_output)
    return _pool_empty(input.shape, input, input)


# --------------------------------------------------------------------------------------
# pooling: autograd. Every pooling operator is linear once max pooling's argmax (the indices)
# is fixed; each *_grad_input operator is the adjoint of its forward, and the adjoint of an
# adjoint is the forward again (for max pooling: the gather at the same indices). The input
# passed to the adjoints only gives the shape and memory format of their result.


def _max_pool2d_setup_context(ctx, inputs, output):
    _, indices = output
    ctx.mark_non_differentiable(indices)
    ctx.set_materialize_grads(False)  # no zero gradient for the indices on every backward
    ctx.save_for_backward(inputs[0], indices)
    ctx.num_args = len(inputs)


def _max_pool2d_backward(ctx, grad, _grad_indices):
    input, indices = ctx.saved_tensors
    grad_input = None
    if ctx.needs_input_grad[0] and grad is not None:
        grad_input = ops.max_pool2d_grad_input(grad, indices, input)
    return (grad_input,) + (None,) * (ctx.num_args - 1)


def _max_pool2d_grad_input_setup_context(ctx, inputs, output):
    _grad_output, indices, _input = inputs
    ctx.save_for_backward(indices)


def _max_pool2d_grad_input_backward(ctx, grad):
    (indices,) = ctx.saved_tensors
    d_grad_output = ops.max_pool2d_gather(grad, indices) if ctx.needs_input_grad[0] else None
    return d_grad_output, None, None


def _max_pool2d_gather_setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _max_pool2d_gather_backward(ctx, grad):
    input, indices = ctx.saved_tensors
    d_input = ops.max_pool2d_grad_input(grad, indices, input) if ctx.needs_input_grad[0] else None
    return d_input, None


def _avg_pool2d_setup_context(ctx, inputs, output):
    input, *pool_args = inputs
    ctx.save_for_backward(input)
    ctx.pool_args = pool_args


def _avg_pool2d_backward(ctx, grad):
    (input,) = ctx.saved_tensors
    grad_input = None
    if ctx.needs_input_grad[0]:
        grad_input = ops.avg_pool2d_grad_input(grad, input, *ctx.pool_args)
    return (grad_input,) + (None,) * len(ctx.pool_args)


def _avg_pool2d_grad_input_setup_context(ctx, inputs, output):
    _grad_output, _input, *pool_args = inputs
    ctx.pool_args = pool_args


def _avg_pool2d_grad_input_backward(ctx, grad):
    d_grad_output = ops.avg_pool2d(grad, *ctx.pool_args) if ctx.needs_input_grad[0] else None
    return (d_grad_output, None) + (None,) * len(ctx.pool_args)


def _adaptive_avg_pool2d_setup_context(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])


def _adaptive_avg_pool2d_backward(ctx, grad):
    (input,) = ctx.saved_tensors
    grad_input = None
    if ctx.needs_input_grad[0]:
        grad_input = ops.adaptive_avg_pool2d_grad_input(grad, input)
    return grad_input, None


def _adaptive_avg_pool2d_grad_input_setup_context(ctx, inputs, output):
    ctx.output_size = list(inputs[0].shape[-2:])


def _adaptive_avg_pool2d_grad_input_backward(ctx, grad):
    d_grad_output = None
    if ctx.needs_input_grad[0]:
        d_grad_output = ops.adaptive_avg_pool2d(grad, ctx.output_size)
    return d_grad_output, None


torch.library.register_autograd(
    "cnnops::max_pool2d_with_indices", _max_pool2d_backward,
    setup_context=_max_pool2d_setup_context)
torch.library.register_autograd(
    "cnnops::adaptive_max_pool2d", _max_pool2d_backward, setup_context=_max_pool2d_setup_context)
torch.library.register_autograd(
    "cnnops::max_pool2d_grad_input", _max_pool2d_grad_input_backward,
    setup_context=_max_pool2d_grad_input_setup_context)
torch.library.register_autograd(
    "cnnops::max_pool2d_gather", _max_pool2d_gather_backward,
    setup_context=_max_pool2d_gather_setup_context)
torch.library.register_autograd(
    "cnnops::avg_pool2d", _avg_pool2d_backward, setup_context=_avg_pool2d_setup_context)
torch.library.register_autograd(
    "cnnops::avg_pool2d_grad_input", _avg_pool2d_grad_input_backward,
    setup_context=_avg_pool2d_grad_input_setup_context)
torch.library.register_autograd(
    "cnnops::adaptive_avg_pool2d", _adaptive_avg_pool2d_backward,
    setup_context=_adaptive_avg_pool2d_setup_context)
torch.library.register_autograd(
    "cnnops::adaptive_avg_pool2d_grad_input", _adaptive_avg_pool2d_grad_input_backward,
    setup_context=_adaptive_avg_pool2d_grad_input_setup_context)

# --------------------------------------------------------------------------------------
# depthwise_separable_conv2d: a depthwise conv2d (groups = in_channels) and a
# pointwise (1x1) conv2d in one pass. (conv2d itself runs the depthwise kernels whenever
# groups == in_channels: that needs nothing here.)


def _separable_memory_format(input, depthwise_weight, pointwise_weight) -> torch.memory_format:
    """The native two-conv sequence's layout: channels_last when any operand is."""
    if torch.channels_last == suggest_memory_format(pointwise_weight):
        return torch.channels_last
    return _conv_memory_format(input, depthwise_weight)


def _separable_output_shape(op, input, depthwise_weight, pointwise_weight, stride, padding,
                            dilation):
    torch._check(input.dim() == 4 and depthwise_weight.dim() == 4 and pointwise_weight.dim() == 4,
                 lambda: f"{op}: 'input', 'depthwise_weight' and 'pointwise_weight' must be 4-D")
    channels, multiple = input.shape[1], depthwise_weight.shape[0]
    torch._check(channels >= 1, lambda: f"{op}: 'input' must have at least one channel")
    torch._check(depthwise_weight.shape[1] == 1 and multiple % channels == 0
                 and multiple >= channels,
                 lambda: f"{op}: 'depthwise_weight' must have shape (C * m, 1, kH, kW) with "
                 f"C = {channels}, got {tuple(depthwise_weight.shape)}")
    torch._check(tuple(pointwise_weight.shape[1:]) == (multiple, 1, 1),
                 lambda: f"{op}: 'pointwise_weight' must have shape (out_channels, {multiple}, 1, "
                 f"1), got {tuple(pointwise_weight.shape)}")
    out_h, out_w = _conv2d_output_hw(op, input.shape, depthwise_weight.shape, stride, padding,
                                     dilation, channels)
    return (input.shape[0], pointwise_weight.shape[0], out_h, out_w)


@torch.library.register_fake("cnnops::depthwise_separable_conv2d")
def _depthwise_separable_conv2d_fake(input, depthwise_weight, pointwise_weight, depthwise_bias,
                                     pointwise_bias, stride, padding, dilation):
    op = "cnnops.depthwise_separable_conv2d"
    _check_operands(op, input, depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias)
    shape = _separable_output_shape(op, input, depthwise_weight, pointwise_weight, stride,
                                    padding, dilation)
    return torch.empty(shape, dtype=input.dtype, device=input.device,
                       memory_format=_separable_memory_format(input, depthwise_weight,
                                                              pointwise_weight))


@torch.library.register_fake("cnnops::depthwise_separable_conv2d_backward")
def _depthwise_separable_conv2d_backward_fake(grad_output, input, depthwise_weight,
                                              pointwise_weight, depthwise_bias, stride, padding,
                                              dilation):
    op = "cnnops.depthwise_separable_conv2d_backward"
    _check_operands(op, input, grad_output, depthwise_weight, pointwise_weight, depthwise_bias)
    shape = _separable_output_shape(op, input, depthwise_weight, pointwise_weight, stride,
                                    padding, dilation)
    torch._check(tuple(grad_output.shape) == tuple(shape),
                 lambda: f"{op}: 'grad_output' must have the output shape {tuple(shape)}")
    like = dict(dtype=input.dtype, device=input.device)
    fmt = _separable_memory_format(input, depthwise_weight, pointwise_weight)
    return (torch.empty(input.shape, memory_format=fmt, **like),
            torch.empty(depthwise_weight.shape, **like),
            torch.empty((depthwise_weight.shape[0],), **like),
            torch.empty((pointwise_weight.shape[0], depthwise_weight.shape[0], 1, 1), **like))


# Autograd. The first-order backward is the fused backward operator (it recomputes the
# depthwise result tile by tile). When the backward itself must be differentiable
# (create_graph=True, grad mode on inside backward), it is spelled out with conv2d and its
# adjoints instead, whose own autograd formulas give every higher derivative.


def _separable_setup_context(ctx, inputs, output):
    input, depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias, *conv_args = inputs
    ctx.save_for_backward(input, depthwise_weight, pointwise_weight, depthwise_bias)
    ctx.conv_args = conv_args
    ctx.has_pointwise_bias = pointwise_bias is not None


def _separable_backward(ctx, grad):
    input, depthwise_weight, pointwise_weight, depthwise_bias = ctx.saved_tensors
    stride, padding, dilation = ctx.conv_args
    needs = ctx.needs_input_grad
    grad_pointwise_bias = None
    if ctx.has_pointwise_bias and needs[4]:
        grad_pointwise_bias = grad.sum((0, 2, 3))
    if not torch.is_grad_enabled():
        grad_input, grad_dw, grad_dw_bias, grad_pw = ops.depthwise_separable_conv2d_backward(
            grad, input, depthwise_weight, pointwise_weight, depthwise_bias, stride, padding,
            dilation)
        grads = (grad_input, grad_dw, grad_pw, grad_dw_bias, grad_pointwise_bias)  # inputs' order
        return (*[g if need else None for g, need in zip(grads, needs)], None, None, None)
    groups = input.shape[1]
    pointwise_args = ([1, 1], [0, 0, 0, 0], [1, 1], 1)
    depthwise_args = (stride, padding, dilation, groups)
    depthwise = ops.conv2d(input, depthwise_weight, depthwise_bias, *depthwise_args)
    grad_depthwise = ops.conv2d_grad_input(grad, pointwise_weight, list(depthwise.shape),
                                           *pointwise_args)
    grad_input = grad_dw = grad_pw = grad_dw_bias = None
    if needs[0]:
        grad_input = ops.conv2d_grad_input(grad_depthwise, depthwise_weight, list(input.shape),
                                           *depthwise_args)
    if needs[1]:
        grad_dw = ops.conv2d_grad_weight(grad_depthwise, input, list(depthwise_weight.shape),
                                         *depthwise_args)
    if needs[2]:
        grad_pw = ops.conv2d_grad_weight(grad, depthwise, list(pointwise_weight.shape),
                                         *pointwise_args)
    if needs[3] and depthwise_bias is not None:
        grad_dw_bias = grad_depthwise.sum((0, 2, 3))
    return grad_input, grad_dw, grad_pw, grad_dw_bias, grad_pointwise_bias, None, None, None


torch.library.register_autograd(
    "cnnops::depthwise_separable_conv2d", _separable_backward,
    setup_context=_separable_setup_context)

# Autocast rules (torch.autocast on CUDA and the CPU), beside the fakes and autograd above.
from . import _autocast  # noqa: E402,F401  (registers on import; needs the operators loaded)
