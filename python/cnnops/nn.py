"""Drop-in ``torch.nn`` modules running on cnnops kernels.

Each module subclasses its ``torch.nn`` twin, so it takes the same constructor arguments,
has the same attributes, parameters, state_dict keys, initialisation and repr, and a
``torch.nn`` state_dict loads into it as is; only the arithmetic of ``forward`` changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import functional

__all__ = ["Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d"]


def _check_at_least(module: str, name: str, value, minimum: int) -> None:
    values = value if isinstance(value, (tuple, list)) else (value,)
    if not all(isinstance(v, int) and v >= minimum for v in values):
        raise ValueError(f"{module}: argument '{name}' must be an int >= {minimum} or a tuple "
                         f"of them, got {value!r}")


class Conv2d(torch.nn.Conv2d):
    """:class:`torch.nn.Conv2d` computed by :func:`cnnops.conv2d`.

    Shapes: input :math:`(N, C_{in}, H, W)` or :math:`(C_{in}, H, W)`, output
    :math:`(N, C_{out}, H_{out}, W_{out})`. ``padding_mode`` other than ``'zeros'`` pads with
    :func:`torch.nn.functional.pad` first, as torch.nn.Conv2d does.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None) -> None:
        # torch.nn.Conv2d accepts these and fails only in forward; refuse them here.
        _check_at_least("Conv2d", "kernel_size", kernel_size, 1)
        _check_at_least("Conv2d", "stride", stride, 1)
        _check_at_least("Conv2d", "dilation", dilation, 1)
        if not isinstance(padding, str):
            _check_at_least("Conv2d", "padding", padding, 0)
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
    _check_at_least(module, "kernel_size", kernel_size, 1)
    if stride is not None and not (isinstance(stride, (tuple, list)) and len(stride) == 0):
        _check_at_least(module, "stride", stride, 1)
    _check_at_least(module, "padding", padding, 0)
    _check_at_least(module, "dilation", dilation, 1)


class MaxPool2d(torch.nn.MaxPool2d):
    """:class:`torch.nn.MaxPool2d` computed by :func:`cnnops.max_pool2d`.

    Shapes: input :math:`(N, C, H, W)` or :math:`(C, H, W)`; output (and indices, with
    ``return_indices``) :math:`(N, C, H_{out}, W_{out})`.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        _check_pool_window("MaxPool2d", kernel_size, stride, padding, dilation)
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
        if divisor_override is not None and divisor_override == 0:
            raise ValueError("AvgPool2d: argument 'divisor_override' must not be 0")
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad,
                         divisor_override)

    def forward(self, input: Tensor) -> Tensor:
        return functional.avg_pool2d(input, self.kernel_size, self.stride, self.padding,
                                     self.ceil_mode, self.count_include_pad,
                                     self.divisor_override)


def _check_output_size(module: str, output_size) -> None:
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size,)
    if not all(s is None or (isinstance(s, int) and s >= 0) for s in sizes):
        raise ValueError(f"{module}: argument 'output_size' must be a non-negative int, None, "
                         f"or a pair of them, got {output_size!r}")


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
