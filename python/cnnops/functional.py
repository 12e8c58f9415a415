"""The ``torch.nn.functional``-shaped API: argument normalisation, then the operator.

Every function takes the same positional arguments, keywords and defaults as its
``torch.nn.functional`` twin and returns the same shapes, dtypes and memory formats.
Tensor checks (dtypes, devices, channel arithmetic, sizes) live in the operators
themselves, so ``torch.ops.cnnops.*`` called directly refuses bad input just as clearly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._checks import INT64_MAX, check_bool
from ._checks import is_int as _is_int
from ._ops import eager_call, ops

__all__ = ["conv2d", "conv2d_bias_relu"]

_IntOrPair = int | Sequence[int]
_INT64_MIN = -INT64_MAX - 1


def _pair(name: str, value: _IntOrPair, op: str) -> list[int]:
    """An int or a sequence of one or two ints, as two ints; anything else is refused."""
    # What callers almost always pass, a plain int or a pair of them, is taken without the
    # general checks below: a call normalises up to four such arguments, and the general
    # path took 15 us of a max_pool2d call's 64 (torch.nn.functional's whole call: 8 us).
    kind = type(value)
    if kind is int:
        if _INT64_MIN <= value <= INT64_MAX:
            return [value, value]
    elif (kind is tuple or kind is list) and len(value) == 2:
        first, second = value
        if (type(first) is int and type(second) is int and _INT64_MIN <= first <= INT64_MAX
                and _INT64_MIN <= second <= INT64_MAX):
            return [first, second]
    if _is_int(value):
        return _pair(name, [value], op)
    if isinstance(value, (tuple, list, torch.Size)) and all(_is_int(v) for v in value):
        if len(value) not in (1, 2):
            raise ValueError(f"{op}: argument '{name}' must be an int or a pair of ints, "
                             f"got {len(value)} values: {tuple(value)}")
        if not all(-INT64_MAX - 1 <= v <= INT64_MAX for v in value):
            raise ValueError(f"{op}: argument '{name}' must fit in int64, got {tuple(value)}")
        return [value[0], value[0]] if len(value) == 1 else list(value)
    raise TypeError(f"{op}: argument '{name}' must be an int or a pair of ints, got {value!r}")


def _conv2d_padding(padding, weight: Tensor, stride: list[int], dilation: list[int],
                    op: str = "conv2d", weight_name: str = "weight") -> list[int]:
    """``padding`` as the operator's [top, bottom, left, right]."""
    if not isinstance(padding, str):
        pad_h, pad_w = _pair("padding", padding, op)
        return [pad_h, pad_h, pad_w, pad_w]
    if padding == "valid":
        return [0, 0, 0, 0]
    if padding != "same":
        raise ValueError(f"{op}: argument 'padding' must be 'same', 'valid', an int or a "
                         f"pair of ints, got {padding!r}")
    if stride != [1, 1]:
        raise ValueError(f"{op}: padding='same' is not supported for strided convolutions "
                         f"(stride={tuple(stride)}); use stride=1 or explicit padding")
    if weight.dim() != 4:
        raise ValueError(f"{op}: argument '{weight_name}' must be 4-D (out_channels, "
                         f"in_channels/groups, kH, kW), got shape {tuple(weight.shape)}")
    # The total padding d*(k-1) is split with the odd one at the bottom/right, as torch does.
    pads = []
    for dim in range(2):
        total = dilation[dim] * (weight.shape[2 + dim] - 1)
        if total > INT64_MAX:
            raise ValueError(f"{op}: argument 'dilation' {tuple(dilation)} is too large for "
                             f"padding='same' with a kernel of shape "
                             f"{tuple(weight.shape[2:])}: the padding does not fit in int64")
        pads += [total // 2, total - total // 2]
    return pads


def _conv2d_call(op, name: str, input, weight, bias, stride, padding, dilation, groups) -> Tensor:
    """Normalises conv2d's arguments and calls `op` (conv2d or a fused variant)."""
    if not isinstance(input, Tensor) or not isinstance(weight, Tensor):
        raise TypeError(f"{name}: arguments 'input' and 'weight' must be tensors, got "
                        f"{type(input).__name__} and {type(weight).__name__}")
    if bias is not None and not isinstance(bias, Tensor):
        raise TypeError(f"{name}: argument 'bias' must be a tensor or None, got "
                        f"{type(bias).__name__}")
    if not _is_int(groups):
        raise TypeError(f"{name}: argument 'groups' must be an int, got {groups!r}")
    if groups > INT64_MAX:
        raise ValueError(f"{name}: argument 'groups' must fit in int64, got {groups}")
    stride = _pair("stride", stride, name)
    dilation = _pair("dilation", dilation, name)
    pads = _conv2d_padding(padding, weight, stride, dilation, name)
    if input.dim() == 3:
        return eager_call(op, input.unsqueeze(0), weight, bias, stride, pads, dilation,
                          groups).squeeze(0)
    if input.dim() != 4:
        raise ValueError(f"{name}: argument 'input' must be 3-D (C, H, W) or 4-D "
                         f"(N, C, H, W), got shape {tuple(input.shape)}")
    return eager_call(op, input, weight, bias, stride, pads, dilation, groups)


def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: _IntOrPair = 1,
    padding: str | _IntOrPair = 0,
    dilation: _IntOrPair = 1,
    groups: int = 1,
) -> Tensor:
    r"""2-D convolution (cross-correlation) over an input of several planes.

    Same arguments and results as :func:`torch.nn.functional.conv2d`.

    Args:
        input: :math:`(N, C_{in}, H, W)` or unbatched :math:`(C_{in}, H, W)`.
        weight: :math:`(C_{out}, C_{in} / \text{groups}, kH, kW)`.
        bias: optional :math:`(C_{out})`.
        stride: an int or a pair ``(sH, sW)``.
        padding: an int, a pair ``(padH, padW)``, ``'valid'`` (none) or ``'same'`` (output
            as large as the input; stride must be 1; an even kernel pads one more at the
            bottom and right).
        dilation: an int or a pair ``(dH, dW)``.
        groups: splits the input channels into this many groups, each with its own filters.

    Returns:
        :math:`(N, C_{out}, H_{out}, W_{out})` (or :math:`(C_{out}, H_{out}, W_{out})`), in
        channels_last memory format when ``input`` or ``weight`` is channels_last.
    """
    return _conv2d_call(ops.conv2d, "conv2d", input, weight, bias, stride, padding, dilation,
                        groups)


def conv2d_bias_relu(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: _IntOrPair = 1,
    padding: str | _IntOrPair = 0,
    dilation: _IntOrPair = 1,
    groups: int = 1,
) -> Tensor:
    """``relu(conv2d(input, weight, bias, ...))`` in one operator, the ReLU applied in the
    kernel's epilogue. Inference only: it refuses to record gradients (run it under
    ``torch.no_grad()`` or ``torch.inference_mode()``). Arguments as :func:`conv2d`.
    """
    return _conv2d_call(ops.conv2d_bias_relu, "conv2d_bias_relu", input, weight, bias, stride,
                        padding, dilation, groups)


# --------------------------------------------------------------------------------------
# pooling

__all__ += ["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d"]

_OutputSize = int | None | Sequence[int | None]


def _pool_input(input, op: str) -> tuple[Tensor, bool]:
    """input as 4-D, and whether it came unbatched (3-D)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: argument 'input' must be a tensor, got {type(input).__name__}")
    if input.dim() == 3:
        return input.unsqueeze(0), True
    if input.dim() != 4:
        raise ValueError(f"{op}: argument 'input' must be 3-D (C, H, W) or 4-D (N, C, H, W), "
                         f"got shape {tuple(input.shape)}")
    return input, False


def _pool_output(output: Tensor, unbatched: bool) -> Tensor:
    # torch gives unbatched results in the contiguous format (a 3-D tensor has no other)
    return output.squeeze(0).contiguous() if unbatched else output


def _pool_stride(stride, kernel: list[int], op: str) -> list[int]:
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        return list(kernel)
    return _pair("stride", stride, op)


def _adaptive_output_size(output_size: _OutputSize, input: Tensor, op: str) -> list[int]:
    """output_size as two ints, None meaning "the input's size" (as torch has it)."""
    if output_size is None or _is_int(output_size):
        output_size = [output_size]
    if not isinstance(output_size, (tuple, list, torch.Size)) or len(output_size) not in (1, 2):
        raise ValueError(f"{op}: argument 'output_size' must be an int or a pair of ints "
                         f"(None keeping the input's size), got {output_size!r}")
    sizes = list(input.shape[-len(output_size):])
    resolved = [size if v is None else v for v, size in zip(output_size, sizes)]
    if not all(_is_int(v) for v in resolved):
        raise TypeError(f"{op}: argument 'output_size' must hold ints or None, got "
                        f"{output_size!r}")
    if not all(-INT64_MAX - 1 <= v <= INT64_MAX for v in resolved):
        raise ValueError(f"{op}: argument 'output_size' must fit in int64, got {output_size!r}")
    return resolved * 2 if len(resolved) == 1 else resolved


def _values_only(x: Tensor, return_indices: bool) -> bool:
    """Whether max pooling may skip its indices: none asked for and no gradient wanted
    (inference). ops.max_pool2d then writes the values alone, as torch does on the CPU."""
    return not return_indices and not (torch.is_grad_enabled() and x.requires_grad)


def max_pool2d(
    input: Tensor,
    kernel_size: _IntOrPair,
    stride: _IntOrPair | None = None,
    padding: _IntOrPair = 0,
    dilation: _IntOrPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""2-D max pooling over an input of several planes.

    Same arguments and results as :func:`torch.nn.functional.max_pool2d`, indices included:
    the first maximum of each window in row-major order wins, NaN wins over any number.

    Args:
        input: :math:`(N, C, H, W)` or unbatched :math:`(C, H, W)`.
        kernel_size: window size, an int or a pair ``(kH, kW)``.
        stride: an int or a pair; ``None`` (the default) means ``kernel_size``.
        padding: implicit ``-inf`` padding on both sides, at most half the kernel size.
        dilation: spacing between the window's taps.
        ceil_mode: use ceil instead of floor for the output size (the last window must
            still start inside the input or its left padding).
        return_indices: also return the argmax of each window, int64 and flat within each
            ``H * W`` plane, as :func:`torch.nn.functional.max_unpool2d` takes them.

    Returns:
        :math:`(N, C, H_{out}, W_{out})` (or :math:`(C, H_{out}, W_{out})`) in the input's
        memory format, and the indices of the same shape if ``return_indices``.
    """
    op = "max_pool2d"
    x, unbatched = _pool_input(input, op)
    kernel = _pair("kernel_size", kernel_size, op)
    check_bool(op, "return_indices", return_indices)
    args = (x, kernel, _pool_stride(stride, kernel, op), _pair("padding", padding, op),
            _pair("dilation", dilation, op), check_bool(op, "ceil_mode", ceil_mode))
    if _values_only(x, return_indices):
        return _pool_output(eager_call(ops.max_pool2d, *args), unbatched)
    output, indices = eager_call(ops.max_pool2d_with_indices, *args)
    if return_indices:
        return _pool_output(output, unbatched), _pool_output(indices, unbatched)
    return _pool_output(output, unbatched)


def avg_pool2d(
    input: Tensor,
    kernel_size: _IntOrPair,
    stride: _IntOrPair | None = None,
    padding: _IntOrPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    r"""2-D average pooling over an input of several planes.

    Same arguments and results as :func:`torch.nn.functional.avg_pool2d`.

    Args:
        input: :math:`(N, C, H, W)` or unbatched :math:`(C, H, W)`.
        kernel_size: window size, an int or a pair ``(kH, kW)``.
        stride: an int or a pair; ``None`` (the default) means ``kernel_size``.
        padding: implicit zero padding on both sides, at most half the kernel size.
        ceil_mode: use ceil instead of floor for the output size.
        count_include_pad: whether the zero padding counts in the divisor.
        divisor_override: if given (non-zero), the divisor of every window.

    Returns:
        :math:`(N, C, H_{out}, W_{out})` (or :math:`(C, H_{out}, W_{out})`) in the input's
        memory format.
    """
    op = "avg_pool2d"
    x, unbatched = _pool_input(input, op)
    kernel = _pair("kernel_size", kernel_size, op)
    if divisor_override is not None and not _is_int(divisor_override):
        raise TypeError(f"{op}: argument 'divisor_override' must be an int or None, got "
                        f"{divisor_override!r}")
    if divisor_override is not None and not -INT64_MAX - 1 <= divisor_override <= INT64_MAX:
        raise ValueError(f"{op}: argument 'divisor_override' must fit in int64, got "
                         f"{divisor_override}")
    output = eager_call(ops.avg_pool2d, x, kernel, _pool_stride(stride, kernel, op),
                        _pair("padding", padding, op), check_bool(op, "ceil_mode", ceil_mode),
                        check_bool(op, "count_include_pad", count_include_pad),
                        divisor_override)
    return _pool_output(output, unbatched)


def adaptive_avg_pool2d(input: Tensor, output_size: _OutputSize) -> Tensor:
    r"""2-D adaptive average pooling: the output has the size asked for, each output averaging
    the input window ``[floor(i * H / H_out), ceil((i + 1) * H / H_out))`` (and likewise
    along W).

    Same arguments and results as :func:`torch.nn.functional.adaptive_avg_pool2d`.

    Args:
        input: :math:`(N, C, H, W)` or unbatched :math:`(C, H, W)`.
        output_size: an int or a pair ``(H_out, W_out)``; ``None`` keeps the input's size.

    Returns:
        :math:`(N, C, H_{out}, W_{out})` (or :math:`(C, H_{out}, W_{out})`) in the input's
        memory format. ``output_size=1`` is global average pooling.
    """
    op = "adaptive_avg_pool2d"
    x, unbatched = _pool_input(input, op)
    output = eager_call(ops.adaptive_avg_pool2d, x, _adaptive_output_size(output_size, x, op))
    return _pool_output(output, unbatched)


def adaptive_max_pool2d(
    input: Tensor, output_size: _OutputSize, return_indices: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    r"""2-D adaptive max pooling, with the windows of :func:`adaptive_avg_pool2d`.

    Same arguments and results as :func:`torch.nn.functional.adaptive_max_pool2d`.

    Args:
        input: :math:`(N, C, H, W)` or unbatched :math:`(C, H, W)`.
        output_size: an int or a pair ``(H_out, W_out)``; ``None`` keeps the input's size.
        return_indices: also return the argmax of each window (int64, flat within each
            ``H * W`` plane).

    Returns:
        :math:`(N, C, H_{out}, W_{out})` (or :math:`(C, H_{out}, W_{out})`) in the input's
        memory format, and the indices of the same shape if ``return_indices``.
    """
    op = "adaptive_max_pool2d"
    x, unbatched = _pool_input(input, op)
    check_bool(op, "return_indices", return_indices)
    size = _adaptive_output_size(output_size, x, op)
    h, w = x.shape[-2:]
    if (_values_only(x, return_indices) and min(h, w, *size) > 0 and h % size[0] == 0 and w % size[1] == 0
            and max((h + 1) * (size[0] + 1), (w + 1) * (size[1] + 1)) < 2**63):
        # Inference on even windows (global pooling among them): they are max_pool2d's, whose
        # values-only operator writes no indices. (Sizes whose window rule would overflow
        # int64 go to the adaptive operator, which refuses them.)
        kernel = [h // size[0], w // size[1]]
        return _pool_output(eager_call(ops.max_pool2d, x, kernel, kernel, [0, 0], [1, 1], False),
                            unbatched)
    output, indices = eager_call(ops.adaptive_max_pool2d, x, size)
    if return_indices:
        return _pool_output(output, unbatched), _pool_output(indices, unbatched)
    return _pool_output(output, unbatched)

# depthwise-separable convolution

__all__ += ["depthwise_separable_conv2d"]


def depthwise_separable_conv2d(
    input: Tensor,
    depthwise_weight: Tensor,
    pointwise_weight: Tensor,
    depthwise_bias: Tensor | None = None,
    pointwise_bias: Tensor | None = None,
    stride: _IntOrPair = 1,
    padding: str | _IntOrPair = 0,
    dilation: _IntOrPair = 1,
) -> Tensor:
    r"""Depthwise convolution followed by a pointwise (1x1) convolution, in one pass.

    Equal to ``conv2d(conv2d(input, depthwise_weight, depthwise_bias, stride, padding,
    dilation, groups=C), pointwise_weight, pointwise_bias)``, without holding the
    intermediate (depthwise) result whole in memory, except in the CPU forward pass of small
    output planes (28x28 and under), which runs the two halves one after the other.

    Args:
        input: :math:`(N, C, H, W)` or unbatched :math:`(C, H, W)`.
        depthwise_weight: :math:`(C \cdot m, 1, kH, kW)`, ``m`` the channel multiplier.
        pointwise_weight: :math:`(C_{out}, C \cdot m, 1, 1)`.
        depthwise_bias: optional :math:`(C \cdot m)`.
        pointwise_bias: optional :math:`(C_{out})`.
        stride, padding, dilation: of the depthwise convolution, as in :func:`conv2d`
            (``padding`` may be an int, a pair, ``'valid'`` or ``'same'``).

    Returns:
        :math:`(N, C_{out}, H_{out}, W_{out})` (or unbatched), in channels_last memory format
        when ``input`` or either weight is channels_last.
    """
    op = "depthwise_separable_conv2d"
    for name, value in (("input", input), ("depthwise_weight", depthwise_weight),
                        ("pointwise_weight", pointwise_weight)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{op}: argument '{name}' must be a tensor, got "
                            f"{type(value).__name__}")
    for name, value in (("depthwise_bias", depthwise_bias), ("pointwise_bias", pointwise_bias)):
        if value is not None and not isinstance(value, Tensor):
            raise TypeError(f"{op}: argument '{name}' must be a tensor or None, got "
                            f"{type(value).__name__}")
    stride = _pair("stride", stride, op)
    dilation = _pair("dilation", dilation, op)
    pads = _conv2d_padding(padding, depthwise_weight, stride, dilation, op, "depthwise_weight")
    args = (depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias, stride, pads,
            dilation)
    if input.dim() == 3:
        return eager_call(ops.depthwise_separable_conv2d, input.unsqueeze(0), *args).squeeze(0)
    if input.dim() != 4:
        raise ValueError(f"{op}: argument 'input' must be 3-D (C, H, W) or 4-D (N, C, H, W), "
                         f"got shape {tuple(input.shape)}")
    return eager_call(ops.depthwise_separable_conv2d, input, *args)
