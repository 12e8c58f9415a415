"""Drop-in ``torch.nn`` modules running on cnnops kernels.

Each module subclasses its ``torch.nn`` twin, so it takes the same constructor arguments,
has the same attributes, parameters, state_dict keys, initialisation and repr, and a
``torch.nn`` state_dict loads into it as is; only the arithmetic of ``forward`` changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from . import functional
from ._checks import check_allocation, check_bool, check_int, is_int

__all__ = ["Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d"]


def _check_at_least(module: str, name: str, value, minimum: int) -> tuple[int, int]:
    """An int >= minimum or a pair of them (bools refused), as a pair."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if not all(is_int(v) for v in values):
        raise TypeError(f"{module}: argument '{name}' must be an int or a pair of ints, got "
                        f"{value!r}")
    if len(values) not in (1, 2):
        raise ValueError(f"{module}: argument '{name}' must be an int or a pair of ints, got "
                         f"{len(values)} values: {value!r}")
    for v in values:
        check_int(module, name, v, minimum)
    return (values[0], values[-1])


def _check_conv_args(module: str, in_channels, out_channels, kernel_size, stride, padding,
                     dilation, groups, dtype, device) -> None:
    """torch.nn.Conv2d's arguments as cnnops can run them, refused before any allocation."""
    check_int(module, "in_channels", in_channels, 1)
    check_int(module, "out_channels", out_channels, 1)
    kernel = _check_at_least(module, "kernel_size", kernel_size, 1)
    _check_at_least(module, "stride", stride, 1)
    _check_at_least(module, "dilation", dilation, 1)
    if not isinstance(padding, str):
        _check_at_least(module, "padding", padding, 0)
    check_int(module, "groups", groups, 1)
    if dtype is not None and dtype not in (torch.float32, torch.float64, torch.float16,
                                           torch.bfloat16):
        raise TypeError(f"{module}: argument 'dtype' must be a floating point dtype "
                        f"(float32, float64, float16 or bfloat16), got {dtype}")
    if in_channels % groups == 0:  # else torch.nn.Conv2d refuses, naming groups
        check_allocation(module, "'in_channels', 'out_channels' and 'kernel_size'",
                         (out_channels, in_channels // groups, *kernel), dtype, device)


class Conv2d(torch.nn.Conv2d):
    """:class:`torch.nn.Conv2d` computed by :func:`cnnops.conv2d`.

    Shapes: input :math:`(N, C_{in}, H, W)` or :math:`(C_{in}, H, W)`, output
    :math:`(N, C_{out}, H_{out}, W_{out})`. ``padding_mode`` other than ``'zeros'`` pads with
    :func:`torch.nn.functional.pad` first, as torch.nn.Conv2d does.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None) -> None:
        # torch.nn.Conv2d accepts some of these and fails only in forward (or in its
        # allocator); refuse them here.
        _check_conv_args("Conv2d", in_channels, out_channels, kernel_size, stride, padding,
                         dilation, groups, dtype, device)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device, dtype)

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return functional.conv2d(input, weight, bias, self.stride, 0, self.dilation,
                                     self.groups)
        return functional.conv2d(input, weight, bias, self.stride, self.padding, self.dilation,
                                 self.groups)


def _check_pool_window(module: str, kernel_size, stride, padding, dilation=1) -> None:
    kernel = _check_at_least(module, "kernel_size", kernel_size, 1)
    if stride is not None and not (isinstance(stride, (tuple, list)) and len(stride) == 0):
        _check_at_least(module, "stride", stride, 1)
    pads = _check_at_least(module, "padding", padding, 0)
    _check_at_least(module, "dilation", dilation, 1)
    if any(p > k // 2 for p, k in zip(pads, kernel)):
        raise ValueError(f"{module}: argument 'padding' must be at most half the kernel size, "
                         f"got padding {padding!r} with kernel_size {kernel_size!r}")


class MaxPool2d(torch.nn.MaxPool2d):
    """:class:`torch.nn.MaxPool2d` computed by :func:`cnnops.max_pool2d`.

    Shapes: input :math:`(N, C, H, W)` or :math:`(C, H, W)`; output (and indices, with
    ``return_indices``) :math:`(N, C, H_{out}, W_{out})`.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        _check_pool_window("MaxPool2d", kernel_size, stride, padding, dilation)
        check_bool("MaxPool2d", "return_indices", return_indices)
        check_bool("MaxPool2d", "ceil_mode", ceil_mode)
        super().__init__(kernel_size, stride, padding, dilation, return_indices, ceil_mode)

    def forward(self, input: Tensor):
        return functional.max_pool2d(input, self.kernel_size, self.stride, self.padding,
                                     self.dilation, ceil_mode=self.ceil_mode,
                                     return_indices=self.return_indices)


class AvgPool2d(torch.nn.AvgPool2d):
    """:class:`torch.nn.AvgPool2d` computed by :func:`cnnops.avg_pool2d`."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None) -> None:
        _check_pool_window("AvgPool2d", kernel_size, stride, padding)
        check_bool("AvgPool2d", "ceil_mode", ceil_mode)
        check_bool("AvgPool2d", "count_include_pad", count_include_pad)
        if divisor_override is not None:
            check_int("AvgPool2d", "divisor_override", divisor_override)
            if divisor_override == 0:
                raise ValueError("AvgPool2d: argument 'divisor_override' must not be 0")
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad,
                         divisor_override)

    def forward(self, input: Tensor) -> Tensor:
        return functional.avg_pool2d(input, self.kernel_size, self.stride, self.padding,
                                     self.ceil_mode, self.count_include_pad,
                                     self.divisor_override)


def _check_output_size(module: str, output_size) -> None:
    sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size,)
    if len(sizes) not in (1, 2) or not all(s is None or is_int(s) for s in sizes):
        raise TypeError(f"{module}: argument 'output_size' must be an int, None, or a pair of "
                        f"them, got {output_size!r}")
    for s in sizes:
        if s is not None:
            check_int(module, "output_size", s, 0)


class AdaptiveAvgPool2d(torch.nn.AdaptiveAvgPool2d):
    """:class:`torch.nn.AdaptiveAvgPool2d` computed by :func:`cnnops.adaptive_avg_pool2d`."""

    def __init__(self, output_size) -> None:
        _check_output_size("AdaptiveAvgPool2d", output_size)
        super().__init__(output_size)

    def forward(self, input: Tensor) -> Tensor:
        return functional.adaptive_avg_pool2d(input, self.output_size)


class AdaptiveMaxPool2d(torch.nn.AdaptiveMaxPool2d):
    """:class:`torch.nn.AdaptiveMaxPool2d` computed by :func:`cnnops.adaptive_max_pool2d`."""

    def __init__(self, output_size, return_indices: bool = False) -> None:
        _check_output_size("AdaptiveMaxPool2d", output_size)
        super().__init__(output_size, return_indices)

    def forward(self, input: Tensor):
        return functional.adaptive_max_pool2d(input, self.output_size, self.return_indices)

# --------------------------------------------------------------------------------------
# depthwise-separable convolution

__all__ += ["DepthwiseSeparableConv2d"]

_IntOrPair = int | Sequence[int]


class DepthwiseSeparableConv2d(torch.nn.Module):
    r"""A depthwise convolution followed by a pointwise (1x1) convolution, computed by
    :func:`cnnops.depthwise_separable_conv2d` in one pass (MobileNet's building block).

    The parameters live in two :class:`Conv2d` submodules, so that the state_dict keys
    (``depthwise.weight``, ``depthwise.bias``, ``pointwise.weight``, ``pointwise.bias``),
    shapes and initialisation are those of ``nn.Conv2d(C, C, k, groups=C)`` followed by
    ``nn.Conv2d(C, out_channels, 1)``: such a pair's weights load as they are. This module's
    ``forward`` does not call theirs.

    Args:
        in_channels: channels of the input (C).
        out_channels: channels of the output.
        kernel_size, stride, padding, dilation, padding_mode: of the depthwise convolution,
            as in ``torch.nn.Conv2d``.
        bias: whether both convolutions have a bias.

    Shape:
        input :math:`(N, C, H, W)` or :math:`(C, H, W)`; output
        :math:`(N, C_{out}, H_{out}, W_{out})` or :math:`(C_{out}, H_{out}, W_{out})`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _IntOrPair,
        stride: _IntOrPair = 1,
        padding: str | _IntOrPair = 0,
        dilation: _IntOrPair = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
    ) -> None:
        name = "DepthwiseSeparableConv2d"
        _check_conv_args(name, in_channels, out_channels, kernel_size, stride, padding,
                         dilation, in_channels, dtype, device)
        check_allocation(name, "'in_channels' and 'out_channels'", (out_channels, in_channels),
                         dtype, device)
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.depthwise = Conv2d(in_channels, in_channels, kernel_size, stride, padding, dilation,
                                groups=in_channels, bias=bias, padding_mode=padding_mode,
                                **factory)
        self.pointwise = Conv2d(in_channels, out_channels, 1, bias=bias, **factory)

    def forward(self, input: Tensor) -> Tensor:
        dw = self.depthwise
        padding = dw.padding
        if dw.padding_mode != "zeros":  # as nn.Conv2d: pad first, then convolve unpadded
            input = F.pad(input, dw._reversed_padding_repeated_twice, mode=dw.padding_mode)
            padding = 0
        return functional.depthwise_separable_conv2d(
            input, dw.weight, self.pointwise.weight, dw.bias, self.pointwise.bias, dw.stride,
            padding, dw.dilation)

    def extra_repr(self) -> str:
        dw = self.depthwise
        s = (f"{dw.in_channels}, {self.pointwise.out_channels}, kernel_size={dw.kernel_size}, "
             f"stride={dw.stride}")
        if dw.padding != (0, 0):
            s += f", padding={dw.padding}"
        if dw.dilation != (1, 1):
            s += f", dilation={dw.dilation}"
        if dw.bias is None:
            s += ", bias=False"
        if dw.padding_mode != "zeros":
            s += f", padding_mode={dw.padding_mode!r}"
        return s
