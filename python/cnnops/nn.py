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

__all__ = ["Conv2d"]


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
