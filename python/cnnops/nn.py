"""Drop-in ``torch.nn`` modules backed by cnnops operators."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as torch_F
from torch import Tensor

from . import functional

__all__ = ["DepthwiseSeparableConv2d"]

_IntOrPair = int | Sequence[int]


class DepthwiseSeparableConv2d(torch.nn.Module):
    r"""A depthwise convolution followed by a pointwise (1x1) convolution, computed by
    :func:`cnnops.depthwise_separable_conv2d` in one pass (MobileNet's building block).

    The parameters live in two ``torch.nn.Conv2d`` submodules, so that the state_dict keys
    (``depthwise.weight``, ``depthwise.bias``, ``pointwise.weight``, ``pointwise.bias``),
    shapes and initialisation are those of ``nn.Conv2d(C, C, k, groups=C)`` followed by
    ``nn.Conv2d(C, out_channels, 1)``: such a pair's weights load as they are. Their own
    ``forward`` is never called.

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
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.depthwise = torch.nn.Conv2d(in_channels, in_channels, kernel_size, stride, padding,
                                         dilation, groups=in_channels, bias=bias,
                                         padding_mode=padding_mode, **factory)
        self.pointwise = torch.nn.Conv2d(in_channels, out_channels, 1, bias=bias, **factory)

    def forward(self, input: Tensor) -> Tensor:
        dw = self.depthwise
        padding = dw.padding
        if dw.padding_mode != "zeros":  # as nn.Conv2d: pad first, then convolve unpadded
            input = torch_F.pad(input, dw._reversed_padding_repeated_twice, mode=dw.padding_mode)
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
