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

# What eager_call needs of torch's internals, private helpers that torch.library's own
# autograd layer uses; checked here, and without any of them eager_call calls the operator
# as it is (checked with torch 2.5 and 2.14, which has all of them; 2.5 lacks
# _any_requires_grad, done in Python there).
_torch_C = torch._C
_CAN_SKIP_AUTOGRAD = all(hasattr(_torch_C, name) for name in (
    "_AutoDispatchBelowAutograd", "_len_torch_dispatch_stack",
    "_is_torch_function_mode_enabled", "_has_torch_function"))


def _any_requires_grad_in_python(*args) -> bool:
    return any(isinstance(a, torch.Tensor) and a.requires_grad for a in args)


_any_requires_grad = getattr(_torch_C, "_any_requires_grad", _any_requires_grad_in_python)
# What eager_call leaves to the operator's own autograd layer when a call records a gradient:
# torch.func's transforms in progress (None where none is), and autocast, whose rules
# (_autocast.py) cast the operands the autograd layer then saves for the backward. Where torch
# lacks either helper, every such call takes the layer.
_functorch_interpreters = getattr(getattr(_torch_C, "_functorch", None), "peek_interpreter_stack",
                                  lambda: True)
_any_autocast = getattr(_torch_C, "_is_any_autocast_enabled", lambda: True)


def eager_call(op, *args):
    """``op(*args)`` in plain eager mode without torch.library's Python autograd layer.

    register_autograd (below) puts a Python function in front of every operator. On a call
    that records nothing (grad mode off, or no argument requiring grad) it only goes back
    into the dispatcher below autograd: 20 of a tiny max_pool2d's 45 us; such a call goes
    there directly. A call that records a gradient runs the operator's own formula (the one
    registered) as a torch.autograd.Function of ours (_register_autograd), without the
    layer's per-call work (it rebuilds the schema's argument list to fill in defaults, ~10 us
    of every call): forward+backward of MobileNet's 8x1024x7x7 depthwise layer 0.71-0.73 ->
    0.64-0.67 ms (cnnops bench), of a 1x8x4x4 one 64 -> 46 us. Everything else
    (torch.compile and export tracing, dispatch or torch-function modes, tensor subclasses)
    calls the operator as it is, and so does a recording call under torch.func's transforms
    or autocast (below).
    """
    if (torch.compiler.is_compiling() or not _CAN_SKIP_AUTOGRAD
            or _torch_C._len_torch_dispatch_stack() > 0
            or _torch_C._is_torch_function_mode_enabled()
            or _torch_C._has_torch_function(args)):  # a tensor subclass among the operands
        return op(*args)
    if _torch_C.is_grad_enabled() and _any_requires_grad(*args):
        function = _EAGER_FUNCTIONS.get(op)
        if (function is None or len(args) != function.arg_count
                or _functorch_interpreters() is not None or _any_autocast()):
            return op(*args)
        return function.apply(*args)
    with _torch_C._AutoDispatchBelowAutograd():
        return op(*args)


# eager_call's autograd.Function per operator (an OpOverloadPacket of torch.ops.cnnops).
_EAGER_FUNCTIONS: dict = {}


def _register_autograd(name: str, backward, setup_context) -> None:
    """torch.library.register_autograd for cnnops::name, and the same formula as an
    autograd.Function for eager_call. Both call setup_context(ctx, inputs, output) after
    the operator, then backward(ctx, *grads), which returns one gradient per argument.
    (Its forward takes ctx, as torch.library's own Function's does: with a setup_context
    method instead, every apply binds the arguments to forward's signature with inspect,
    ~20 us.)"""
    torch.library.register_autograd(f"cnnops::{name}", backward, setup_context=setup_context)
    op = getattr(ops, name)

    def forward(ctx, *args):
        with _torch_C._AutoDispatchBelowAutograd():
            output = op(*args)
        setup_context(ctx, args, output)
        return output

    _EAGER_FUNCTIONS[op] = type(f"cnnops_{name}", (torch.autograd.Function,), {
        "forward": staticmethod(forward),
        "backward": staticmethod(backward),
        "arg_count": len(op.default._schema.arguments),
    })


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


_INT64_MAX = 2**63 - 1


def _check_list(op: str, name: str, values, length: int, minimum: int) -> None:
    torch._check_value(len(values) == length,
                       lambda: f"{op}: argument '{name}' must have {length} values, got {values}")
    torch._check_value(all(v >= minimum for v in values),
                       lambda: f"{op}: argument '{name}' must be >= {minimum}, got {values}")


def _check_float(op: str, name: str, t: torch.Tensor) -> None:
    """The dtypes the kernels compute in: float32/float64, and float16/bfloat16 off the CPU."""
    ok = t.dtype in (torch.float32, torch.float64) or (
        t.device.type != "cpu" and t.dtype in (torch.float16, torch.bfloat16))
    torch._check_type(ok, lambda: f"{op}: argument '{name}' has dtype {t.dtype}, which is not "
                      f"supported on {t.device.type} (expected float32 or float64, or on CUDA "
                      f"also float16 or bfloat16)")


def _window_out(op, size, kernel, pad_begin, pad_end, stride, dilation, ceil_mode=False,
                padding_name="padding"):
    """csrc/common/result_size.cpp's window_out_size, with its int64 overflow checks."""
    padded = size + pad_begin + pad_end
    extent = dilation * (kernel - 1)
    if isinstance(padded, int):
        torch._check_value(padded <= _INT64_MAX, lambda: f"{op}: argument '{padding_name}' "
                           f"({pad_begin} + {pad_end}) is too large: the padded input extent "
                           f"does not fit in int64")
    if isinstance(extent, int):
        torch._check_value(extent <= _INT64_MAX, lambda: f"{op}: argument 'dilation' "
                           f"({dilation}) is too large for a kernel of extent {kernel}")
    span = padded - extent - 1 + (stride - 1 if ceil_mode else 0)
    return span // stride + 1


def _check_result_size(op: str, source: str, size, dtype: torch.dtype) -> None:
    numel = 1
    for s in size:
        numel = numel * s
    if isinstance(numel, int):
        nbytes = numel * torch.empty((), dtype=dtype).element_size()
        torch._check_value(nbytes <= _INT64_MAX, lambda: f"{op}: the result would have shape "
                           f"{list(size)}, more elements than int64 can count; its size comes "
                           f"from {source}")


def _conv2d_output_hw(op, input_size, weight_size, stride, padding, dilation, groups):
    _check_list(op, "stride", stride, 2, 1)
    _check_list(op, "padding", padding, 4, 0)
    _check_list(op, "dilation", dilation, 2, 1)
    torch._check_value(groups >= 1, lambda: f"{op}: argument 'groups' must be >= 1, got {groups}")
    torch._check_value(weight_size[2] >= 1 and weight_size[3] >= 1,
                       lambda: f"{op}: the weight's kernel size must be at least 1x1, got weight "
                       f"of shape {tuple(weight_size)}")
    torch._check_value(input_size[1] % groups == 0, lambda: f"{op}: input channels "
                       f"({input_size[1]}) must be divisible by 'groups' ({groups})")
    torch._check_value(weight_size[0] % groups == 0, lambda: f"{op}: out channels "
                       f"(weight.shape[0] = {weight_size[0]}) must be divisible by 'groups' "
                       f"({groups})")
    torch._check_value(input_size[1] == weight_size[1] * groups,
                       lambda: f"{op}: input has {input_size[1]} channels, but weight of shape "
                       f"{tuple(weight_size)} with groups={groups} expects "
                       f"{weight_size[1] * groups} channels")
    out = [_window_out(op, input_size[2 + d], weight_size[2 + d], padding[2 * d],
                       padding[2 * d + 1], stride[d], dilation[d]) for d in range(2)]
    torch._check_value(out[0] >= 1 and out[1] >= 1,
                       lambda: f"{op}: the kernel is larger than the padded input")
    return out


def _check_operands(op: str, ref_name: str, ref: torch.Tensor, **others) -> None:
    """Every other operand (None skipped) has ``ref``'s dtype and device."""
    for name, other in others.items():
        if other is None:
            continue
        torch._check_type(other.dtype == ref.dtype, lambda: f"{op}: argument '{name}' has dtype "
                          f"{other.dtype} but '{ref_name}' has dtype {ref.dtype}; they must "
                          f"match")
        torch._check_value(other.device == ref.device, lambda: f"{op}: argument '{name}' is on "
                           f"{other.device} but '{ref_name}' is on {ref.device}; they must be "
                           f"on one device")


@torch.library.register_fake("cnnops::conv2d")
def _conv2d_fake(input, weight, bias, stride, padding, dilation, groups, op="cnnops.conv2d"):
    _check_float(op, "input", input)
    _check_operands(op, "input", input, weight=weight, bias=bias)
    torch._check_value(input.dim() == 4, lambda: f"{op}: argument 'input' must be 4-D, got a "
                       f"tensor of shape {tuple(input.shape)}")
    torch._check_value(weight.dim() == 4, lambda: f"{op}: argument 'weight' must be 4-D, got a "
                       f"tensor of shape {tuple(weight.shape)}")
    if bias is not None:
        torch._check_value(bias.dim() == 1 and bias.shape[0] == weight.shape[0],
                           lambda: f"{op}: argument 'bias' must have shape ({weight.shape[0]},) "
                           f"to match weight.shape[0], got {tuple(bias.shape)}")
    out_h, out_w = _conv2d_output_hw(op, input.shape, weight.shape, stride, padding, dilation,
                                     groups)
    size = (input.shape[0], weight.shape[0], out_h, out_w)
    _check_result_size(op, "'input', 'weight', 'padding', 'stride' and 'dilation'", size,
                       input.dtype)
    return torch.empty(size, dtype=input.dtype, device=input.device,
                       memory_format=_conv_memory_format(input, weight))


@torch.library.register_fake("cnnops::conv2d_bias_relu")
def _conv2d_bias_relu_fake(input, weight, bias, stride, padding, dilation, groups):
    return _conv2d_fake(input, weight, bias, stride, padding, dilation, groups,
                        "cnnops.conv2d_bias_relu")


@torch.library.register_fake("cnnops::conv2d_grad_input")
def _conv2d_grad_input_fake(grad_output, weight, input_size, stride, padding, dilation, groups):
    op = "cnnops.conv2d_grad_input"
    _check_float(op, "grad_output", grad_output)
    _check_operands(op, "grad_output", grad_output, weight=weight)
    _check_list(op, "input_size", input_size, 4, 0)
    _conv2d_output_hw(op, input_size, weight.shape, stride, padding, dilation, groups)
    _check_result_size(op, "'input_size'", input_size, grad_output.dtype)
    return torch.empty(input_size, dtype=grad_output.dtype, device=grad_output.device,
                       memory_format=_conv_memory_format(grad_output, weight))


@torch.library.register_fake("cnnops::conv2d_grad_weight")
def _conv2d_grad_weight_fake(grad_output, input, weight_size, stride, padding, dilation, groups):
    op = "cnnops.conv2d_grad_weight"
    _check_float(op, "grad_output", grad_output)
    _check_operands(op, "grad_output", grad_output, input=input)
    _check_list(op, "weight_size", weight_size, 4, 0)
    _conv2d_output_hw(op, input.shape, weight_size, stride, padding, dilation, groups)
    _check_result_size(op, "'weight_size'", weight_size, grad_output.dtype)
    return torch.empty(weight_size, dtype=grad_output.dtype, device=grad_output.device,
                       memory_format=_conv_memory_format(grad_output, input))


@torch.library.register_fake("cnnops::conv2d_backward")
def _conv2d_backward_fake(grad_output, input, weight, stride, padding, dilation, groups, bias):
    op = "cnnops.conv2d_backward"
    _check_float(op, "grad_output", grad_output)
    _check_operands(op, "grad_output", grad_output, input=input, weight=weight)
    _conv2d_output_hw(op, input.shape, weight.shape, stride, padding, dilation, groups)
    like = dict(dtype=grad_output.dtype, device=grad_output.device)
    return (torch.empty(input.shape, memory_format=_conv_memory_format(grad_output, weight),
                        **like),
            torch.empty(weight.shape, memory_format=_conv_memory_format(grad_output, input),
                        **like),
            torch.empty((weight.shape[0] if bias else 0,), **like))


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
    if ctx.needs_input_grad[0] and ctx.needs_input_grad[1] and not torch.is_grad_enabled():
        # No higher derivative wanted: the three gradients in one call, which the CPU's
        # depthwise small planes compute in one pass over the operands.
        bias = ctx.has_bias and ctx.needs_input_grad[2]
        grad_input, grad_weight, grad_bias = eager_call(ops.conv2d_backward, grad, input, weight,
                                                        *ctx.conv_args, bias)
        return grad_input, grad_weight, grad_bias if bias else None, None, None, None, None
    if ctx.needs_input_grad[0]:
        grad_input = eager_call(ops.conv2d_grad_input, grad, weight, input.shape, *ctx.conv_args)
    if ctx.needs_input_grad[1]:
        grad_weight = eager_call(ops.conv2d_grad_weight, grad, input, weight.shape, *ctx.conv_args)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_bias = grad.sum((0, 2, 3))
    return grad_input, grad_weight, grad_bias, None, None, None, None


def _conv2d_grad_input_setup_context(ctx, inputs, output):
    grad_output, weight, _input_size, *conv_args = inputs
    ctx.save_for_backward(grad_output, weight)
    ctx.conv_args = conv_args


# The gradients of conv2d_grad_input(grad_output, weight) and of
# conv2d_grad_weight(grad_output, input) given `grad`, the gradient of their result: None
# where `needs` says no. conv2d_backward's formula adds the two.
def _grad_input_vjp(grad_output, weight, grad, conv_args, needs):
    d_grad_output = d_weight = None
    if needs[0]:
        d_grad_output = eager_call(ops.conv2d, grad, weight, None, *conv_args)
    if needs[1]:
        d_weight = eager_call(ops.conv2d_grad_weight, grad_output, grad, weight.shape, *conv_args)
    return d_grad_output, d_weight


def _grad_weight_vjp(grad_output, input, grad, conv_args, needs):
    d_grad_output = d_input = None
    if needs[0]:
        d_grad_output = eager_call(ops.conv2d, input, grad, None, *conv_args)
    if needs[1]:
        d_input = eager_call(ops.conv2d_grad_input, grad_output, grad, input.shape, *conv_args)
    return d_grad_output, d_input


def _conv2d_grad_input_backward(ctx, grad):
    grad_output, weight = ctx.saved_tensors
    return (*_grad_input_vjp(grad_output, weight, grad, ctx.conv_args, ctx.needs_input_grad[:2]),
            None, None, None, None, None)


def _conv2d_grad_weight_setup_context(ctx, inputs, output):
    grad_output, input, _weight_size, *conv_args = inputs
    ctx.save_for_backward(grad_output, input)
    ctx.conv_args = conv_args


def _conv2d_grad_weight_backward(ctx, grad):
    grad_output, input = ctx.saved_tensors
    return (*_grad_weight_vjp(grad_output, input, grad, ctx.conv_args, ctx.needs_input_grad[:2]),
            None, None, None, None, None)


def _conv2d_backward_setup_context(ctx, inputs, output):
    grad_output, input, weight, *conv_args, _bias = inputs
    ctx.save_for_backward(grad_output, input, weight)
    ctx.conv_args = conv_args


def _conv2d_backward_backward(ctx, d_grad_input, d_grad_weight, d_grad_bias):
    # conv2d_backward's results are conv2d_grad_input(grad_output, weight),
    # conv2d_grad_weight(grad_output, input) and grad_output summed over (N, H, W).
    grad_output, input, weight = ctx.saved_tensors
    needs = ctx.needs_input_grad
    go_from_input, d_weight = _grad_input_vjp(grad_output, weight, d_grad_input, ctx.conv_args,
                                              (needs[0], needs[2]))
    go_from_weight, d_input = _grad_weight_vjp(grad_output, input, d_grad_weight, ctx.conv_args,
                                               (needs[0], needs[1]))
    d_grad_output = None
    if needs[0]:
        d_grad_output = go_from_input + go_from_weight
        if d_grad_bias.numel() > 0:
            d_grad_output = d_grad_output + d_grad_bias.view(1, -1, 1, 1)
    return d_grad_output, d_input, d_weight, None, None, None, None, None


_register_autograd("conv2d", _conv2d_backward, setup_context=_conv2d_setup_context)
_register_autograd(
    "conv2d_backward", _conv2d_backward_backward,
    setup_context=_conv2d_backward_setup_context)
_register_autograd(
    "conv2d_grad_input", _conv2d_grad_input_backward,
    setup_context=_conv2d_grad_input_setup_context)
_register_autograd(
    "conv2d_grad_weight", _conv2d_grad_weight_backward,
    setup_context=_conv2d_grad_weight_setup_context)


def _inference_only(ctx, inputs, output):
    raise RuntimeError(
        "cnnops.conv2d_bias_relu is inference-only and records no gradients; call it under "
        "torch.no_grad() or torch.inference_mode() (cnnops.fuse does), or train with "
        "cnnops.conv2d followed by relu")


def _no_backward(ctx, grad):
    raise AssertionError("unreachable: conv2d_bias_relu refuses to record gradients")


_register_autograd("conv2d_bias_relu", _no_backward, setup_context=_inference_only)

# --------------------------------------------------------------------------------------
# pooling: shape rules shared by the fake kernels (they mirror csrc/common/pool_params.cpp)


def _pool_memory_format(t: torch.Tensor) -> torch.memory_format:
    """torch's rule for a pooling result: the input's suggested memory format."""
    return suggest_memory_format(t) if t.dim() == 4 else torch.contiguous_format


def _pool_out_size(op, size, kernel, pad, stride, dilation, ceil_mode):
    out = _window_out(op, size, kernel, pad, pad, stride, dilation, ceil_mode)
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1  # the last window must start inside the input or its left padding
    return out


def _check_pool_input(op: str, input: torch.Tensor) -> None:
    _check_float(op, "input", input)
    torch._check_value(input.dim() == 4, lambda: f"{op}: argument 'input' must be 4-D "
                       f"(N, C, H, W), got a tensor of shape {tuple(input.shape)}")


def _pool2d_output_size(op, input, kernel_size, stride, padding, dilation, ceil_mode):
    _check_pool_input(op, input)
    _check_list(op, "kernel_size", kernel_size, 2, 1)
    _check_list(op, "stride", stride, 2, 1)
    _check_list(op, "padding", padding, 2, 0)
    _check_list(op, "dilation", dilation, 2, 1)
    torch._check_value(all(padding[d] <= kernel_size[d] // 2 for d in range(2)),
                       lambda: f"{op}: argument 'padding' must be at most half the kernel size, "
                       f"got padding {padding} with kernel_size {kernel_size}")
    out = [_pool_out_size(op, input.shape[2 + d], kernel_size[d], padding[d], stride[d],
                          dilation[d], ceil_mode) for d in range(2)]
    torch._check_value(out[0] >= 1 and out[1] >= 1,
                       lambda: f"{op}: argument 'kernel_size' is larger than the padded input")
    size = (input.shape[0], input.shape[1], out[0], out[1])
    _check_result_size(op, "'input', 'kernel_size', 'stride', 'padding' and 'dilation'", size,
                       input.dtype)
    return size


def _adaptive_output_size(op, input, output_size):
    _check_pool_input(op, input)
    _check_list(op, "output_size", output_size, 2, 0)
    size = (input.shape[0], input.shape[1], *output_size)
    _check_result_size(op, "'input' and 'output_size'", size, input.dtype)
    return size


def _check_indexed(op: str, values_name: str, values: torch.Tensor, indices: torch.Tensor):
    _check_float(op, values_name, values)
    torch._check_type(indices.dtype == torch.int64, lambda: f"{op}: argument 'indices' must be "
                      f"int64, got {indices.dtype}")
    torch._check_value(values.dim() == 4 and indices.dim() == 4, lambda: f"{op}: arguments "
                       f"'{values_name}' and 'indices' must be 4-D, got shapes "
                       f"{tuple(values.shape)} and {tuple(indices.shape)}")
    torch._check_value(values.shape[:2] == indices.shape[:2], lambda: f"{op}: arguments "
                       f"'{values_name}' {tuple(values.shape)} and 'indices' "
                       f"{tuple(indices.shape)} must agree in batch and channels")
    torch._check_value(values.device == indices.device, lambda: f"{op}: argument 'indices' is "
                       f"on {indices.device} but '{values_name}' is on {values.device}; they "
                       f"must be on one device")


def _check_grad(op: str, grad_output: torch.Tensor, input: torch.Tensor, out_size) -> None:
    _check_operands(op, "input", input, grad_output=grad_output)
    torch._check_value(tuple(grad_output.shape) == tuple(out_size), lambda: f"{op}: argument "
                       f"'grad_output' has shape {tuple(grad_output.shape)}, expected the "
                       f"pooling output shape {tuple(out_size)}")


def _pool_empty(size, like: torch.Tensor, format_of: torch.Tensor, dtype=None) -> torch.Tensor:
    return torch.empty(size, dtype=dtype or like.dtype, device=like.device,
                       memory_format=_pool_memory_format(format_of))


@torch.library.register_fake("cnnops::max_pool2d_with_indices")
def _max_pool2d_with_indices_fake(input, kernel_size, stride, padding, dilation, ceil_mode):
    size = _pool2d_output_size("cnnops.max_pool2d", input, kernel_size, stride, padding,
                               dilation, ceil_mode)
    return _pool_empty(size, input, input), _pool_empty(size, input, input, torch.int64)


@torch.library.register_fake("cnnops::max_pool2d")
def _max_pool2d_fake(input, kernel_size, stride, padding, dilation, ceil_mode):
    size = _pool2d_output_size("cnnops.max_pool2d", input, kernel_size, stride, padding,
                               dilation, ceil_mode)
    return _pool_empty(size, input, input)


@torch.library.register_fake("cnnops::adaptive_max_pool2d")
def _adaptive_max_pool2d_fake(input, output_size):
    size = _adaptive_output_size("cnnops.adaptive_max_pool2d", input, output_size)
    return _pool_empty(size, input, input), _pool_empty(size, input, input, torch.int64)


@torch.library.register_fake("cnnops::max_pool2d_grad_input")
def _max_pool2d_grad_input_fake(grad_output, indices, input):
    op = "cnnops.max_pool2d_grad_input"
    _check_indexed(op, "input", input, indices)
    _check_grad(op, grad_output, input, indices.shape)
    return _pool_empty(input.shape, input, input)


@torch.library.register_fake("cnnops::max_pool2d_gather")
def _max_pool2d_gather_fake(input, indices):
    _check_indexed("cnnops.max_pool2d_gather", "input", input, indices)
    return _pool_empty(indices.shape, input, indices)


@torch.library.register_fake("cnnops::avg_pool2d")
def _avg_pool2d_fake(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, op="cnnops.avg_pool2d"):
    torch._check_value(divisor_override is None or divisor_override != 0,
                       lambda: f"{op}: argument 'divisor_override' must not be 0")
    size = _pool2d_output_size(op, input, kernel_size, stride, padding,
                               [1, 1], ceil_mode)
    return _pool_empty(size, input, input)


@torch.library.register_fake("cnnops::avg_pool2d_grad_input")
def _avg_pool2d_grad_input_fake(grad_output, input, kernel_size, stride, padding, ceil_mode,
                                count_include_pad, divisor_override):
    op = "cnnops.avg_pool2d_grad_input"
    size = _avg_pool2d_fake(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                            divisor_override, op).shape
    _check_grad(op, grad_output, input, size)
    return _pool_empty(input.shape, input, input)


@torch.library.register_fake("cnnops::adaptive_avg_pool2d")
def _adaptive_avg_pool2d_fake(input, output_size):
    size = _adaptive_output_size("cnnops.adaptive_avg_pool2d", input, output_size)
    return _pool_empty(size, input, input)


@torch.library.register_fake("cnnops::adaptive_avg_pool2d_grad_input")
def _adaptive_avg_pool2d_grad_input_fake(grad_output, input):
    op = "cnnops.adaptive_avg_pool2d_grad_input"
    torch._check_value(grad_output.dim() == 4, lambda: f"{op}: argument 'grad_output' must be "
                       f"4-D, got shape {tuple(grad_output.shape)}")
    size = _adaptive_output_size(op, input, grad_output.shape[2:])
    _check_grad(op, grad_output, input, size)
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
        grad_input = eager_call(ops.max_pool2d_grad_input, grad, indices, input)
    return (grad_input,) + (None,) * (ctx.num_args - 1)


def _max_pool2d_values_setup_context(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])
    ctx.pool_args = inputs[1:]


def _max_pool2d_values_backward(ctx, grad):
    # The values-only operator kept no indices: they are recomputed, then the gradient flows
    # as through max_pool2d_with_indices (and on to higher orders through its adjoints).
    (input,) = ctx.saved_tensors
    grad_input = None
    if ctx.needs_input_grad[0]:
        _, indices = eager_call(ops.max_pool2d_with_indices, input.detach(), *ctx.pool_args)
        grad_input = eager_call(ops.max_pool2d_grad_input, grad, indices, input)
    return (grad_input,) + (None,) * len(ctx.pool_args)


def _max_pool2d_grad_input_setup_context(ctx, inputs, output):
    _grad_output, indices, _input = inputs
    ctx.save_for_backward(indices)


def _max_pool2d_grad_input_backward(ctx, grad):
    (indices,) = ctx.saved_tensors
    d_grad_output = (eager_call(ops.max_pool2d_gather, grad, indices)
                     if ctx.needs_input_grad[0] else None)
    return d_grad_output, None, None


def _max_pool2d_gather_setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _max_pool2d_gather_backward(ctx, grad):
    input, indices = ctx.saved_tensors
    d_input = (eager_call(ops.max_pool2d_grad_input, grad, indices, input)
               if ctx.needs_input_grad[0] else None)
    return d_input, None


def _avg_pool2d_setup_context(ctx, inputs, output):
    input, *pool_args = inputs
    ctx.save_for_backward(input)
    ctx.pool_args = pool_args


def _avg_pool2d_backward(ctx, grad):
    (input,) = ctx.saved_tensors
    grad_input = None
    if ctx.needs_input_grad[0]:
        grad_input = eager_call(ops.avg_pool2d_grad_input, grad, input, *ctx.pool_args)
    return (grad_input,) + (None,) * len(ctx.pool_args)


def _avg_pool2d_grad_input_setup_context(ctx, inputs, output):
    _grad_output, _input, *pool_args = inputs
    ctx.pool_args = pool_args


def _avg_pool2d_grad_input_backward(ctx, grad):
    d_grad_output = (eager_call(ops.avg_pool2d, grad, *ctx.pool_args)
                     if ctx.needs_input_grad[0] else None)
    return (d_grad_output, None) + (None,) * len(ctx.pool_args)


def _adaptive_avg_pool2d_setup_context(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])


def _adaptive_avg_pool2d_backward(ctx, grad):
    (input,) = ctx.saved_tensors
    grad_input = None
    if ctx.needs_input_grad[0]:
        grad_input = eager_call(ops.adaptive_avg_pool2d_grad_input, grad, input)
    return grad_input, None


def _adaptive_avg_pool2d_grad_input_setup_context(ctx, inputs, output):
    ctx.output_size = list(inputs[0].shape[-2:])


def _adaptive_avg_pool2d_grad_input_backward(ctx, grad):
    d_grad_output = None
    if ctx.needs_input_grad[0]:
        d_grad_output = eager_call(ops.adaptive_avg_pool2d, grad, ctx.output_size)
    return d_grad_output, None


_register_autograd(
    "max_pool2d_with_indices", _max_pool2d_backward,
    setup_context=_max_pool2d_setup_context)
_register_autograd(
    "max_pool2d", _max_pool2d_values_backward,
    setup_context=_max_pool2d_values_setup_context)
_register_autograd(
    "adaptive_max_pool2d", _max_pool2d_backward, setup_context=_max_pool2d_setup_context)
_register_autograd(
    "max_pool2d_grad_input", _max_pool2d_grad_input_backward,
    setup_context=_max_pool2d_grad_input_setup_context)
_register_autograd(
    "max_pool2d_gather", _max_pool2d_gather_backward,
    setup_context=_max_pool2d_gather_setup_context)
_register_autograd("avg_pool2d", _avg_pool2d_backward, setup_context=_avg_pool2d_setup_context)
_register_autograd(
    "avg_pool2d_grad_input", _avg_pool2d_grad_input_backward,
    setup_context=_avg_pool2d_grad_input_setup_context)
_register_autograd(
    "adaptive_avg_pool2d", _adaptive_avg_pool2d_backward,
    setup_context=_adaptive_avg_pool2d_setup_context)
_register_autograd(
    "adaptive_avg_pool2d_grad_input", _adaptive_avg_pool2d_grad_input_backward,
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
    size = (input.shape[0], pointwise_weight.shape[0], out_h, out_w)
    _check_result_size(op, "'input', 'pointwise_weight', 'padding', 'stride' and 'dilation'",
                       size, input.dtype)
    return size


def _check_separable_bias(op, name, bias, weight):
    if bias is not None:
        torch._check_value(bias.dim() == 1 and bias.shape[0] == weight.shape[0],
                           lambda: f"{op}: argument '{name}' must have shape ({weight.shape[0]},)"
                           f", got {tuple(bias.shape)}")


@torch.library.register_fake("cnnops::depthwise_separable_conv2d")
def _depthwise_separable_conv2d_fake(input, depthwise_weight, pointwise_weight, depthwise_bias,
                                     pointwise_bias, stride, padding, dilation):
    op = "cnnops.depthwise_separable_conv2d"
    _check_float(op, "input", input)
    _check_operands(op, "input", input, depthwise_weight=depthwise_weight,
                    pointwise_weight=pointwise_weight, depthwise_bias=depthwise_bias,
                    pointwise_bias=pointwise_bias)
    shape = _separable_output_shape(op, input, depthwise_weight, pointwise_weight, stride,
                                    padding, dilation)
    _check_separable_bias(op, "depthwise_bias", depthwise_bias, depthwise_weight)
    _check_separable_bias(op, "pointwise_bias", pointwise_bias, pointwise_weight)
    return torch.empty(shape, dtype=input.dtype, device=input.device,
                       memory_format=_separable_memory_format(input, depthwise_weight,
                                                              pointwise_weight))


@torch.library.register_fake("cnnops::depthwise_separable_conv2d_backward")
def _depthwise_separable_conv2d_backward_fake(grad_output, input, depthwise_weight,
                                              pointwise_weight, depthwise_bias, stride, padding,
                                              dilation):
    op = "cnnops.depthwise_separable_conv2d_backward"
    _check_float(op, "input", input)
    _check_operands(op, "input", input, grad_output=grad_output,
                    depthwise_weight=depthwise_weight, pointwise_weight=pointwise_weight,
                    depthwise_bias=depthwise_bias)
    shape = _separable_output_shape(op, input, depthwise_weight, pointwise_weight, stride,
                                    padding, dilation)
    _check_separable_bias(op, "depthwise_bias", depthwise_bias, depthwise_weight)
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
        grad_input, grad_dw, grad_dw_bias, grad_pw = eager_call(
            ops.depthwise_separable_conv2d_backward, grad, input, depthwise_weight,
            pointwise_weight, depthwise_bias, stride, padding, dilation)
        grads = (grad_input, grad_dw, grad_pw, grad_dw_bias, grad_pointwise_bias)  # inputs' order
        return (*[g if need else None for g, need in zip(grads, needs)], None, None, None)
    groups = input.shape[1]
    pointwise_args = ([1, 1], [0, 0, 0, 0], [1, 1], 1)
    depthwise_args = (stride, padding, dilation, groups)
    depthwise = eager_call(ops.conv2d, input, depthwise_weight, depthwise_bias, *depthwise_args)
    grad_depthwise = eager_call(ops.conv2d_grad_input, grad, pointwise_weight,
                                list(depthwise.shape), *pointwise_args)
    grad_input = grad_dw = grad_pw = grad_dw_bias = None
    if needs[0]:
        grad_input = eager_call(ops.conv2d_grad_input, grad_depthwise, depthwise_weight,
                                list(input.shape), *depthwise_args)
    if needs[1]:
        grad_dw = eager_call(ops.conv2d_grad_weight, grad_depthwise, input,
                             list(depthwise_weight.shape), *depthwise_args)
    if needs[2]:
        grad_pw = eager_call(ops.conv2d_grad_weight, grad, depthwise, list(pointwise_weight.shape),
                             *pointwise_args)
    if needs[3] and depthwise_bias is not None:
        grad_dw_bias = grad_depthwise.sum((0, 2, 3))
    return grad_input, grad_dw, grad_pw, grad_dw_bias, grad_pointwise_bias, None, None, None


_register_autograd(
    "depthwise_separable_conv2d", _separable_backward,
    setup_context=_separable_setup_context)

# Autocast rules (torch.autocast on CUDA and the CPU), beside the fakes and autograd above.
from . import _autocast  # noqa: E402,F401  (registers on import; needs the operators loaded)
