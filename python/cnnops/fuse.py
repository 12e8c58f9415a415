"""Inference fusion: BatchNorm folded into the preceding convolution, and convolution plus
bias plus ReLU run as one operator (``conv2d_bias_relu``, ReLU in the kernel's epilogue).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import functional

__all__ = ["fuse", "FusedConv2d"]


class FusedConv2d(nn.Module):
    """A convolution with any batch norm folded in and, optionally, ReLU in its epilogue.

    Inference only: the weight and bias are buffers, and with ``relu`` the operator refuses
    to record gradients.
    """

    def __init__(self, conv: nn.Conv2d, weight: Tensor, bias: Tensor | None, relu: bool):
        super().__init__()
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups
        self.padding_mode = conv.padding_mode
        self._reversed_padding_repeated_twice = conv._reversed_padding_repeated_twice
        self.relu = relu
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, input: Tensor) -> Tensor:
        padding = self.padding
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        conv = functional.conv2d_bias_relu if self.relu else functional.conv2d
        return conv(input, self.weight, self.bias, self.stride, padding, self.dilation,
                    self.groups)

    def extra_repr(self) -> str:
        out_channels, in_per_group, kh, kw = self.weight.shape
        return (f"{in_per_group * self.groups}, {out_channels}, kernel_size=({kh}, {kw}), "
                f"stride={self.stride}, padding={self.padding}, groups={self.groups}, "
                f"bias={self.bias is not None}, relu={self.relu}")


def _fold_batch_norm(weight: Tensor, bias: Tensor | None, bn: nn.BatchNorm2d):
    """Weight and bias of conv followed by bn (eval mode): one affine map per channel."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    weight = weight * scale.reshape(-1, 1, 1, 1)
    bias = shift if bias is None else bias * scale + shift
    return weight, bias


def _foldable(bn: nn.Module, conv: nn.Conv2d) -> bool:
    return (isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats
            and bn.running_mean is not None and bn.num_features == conv.out_channels)


def _fuse_sequential(seq: nn.Sequential) -> None:
    names = list(seq._modules)
    i = 0
    while i < len(names):
        conv = seq._modules[names[i]]
        if not isinstance(conv, nn.Conv2d) or type(conv).forward is not nn.Conv2d.forward:
            i += 1
            continue
        weight, bias, used = conv.weight, conv.bias, 1
        nxt = seq._modules[names[i + used]] if i + used < len(names) else None
        if nxt is not None and _foldable(nxt, conv):
            weight, bias = _fold_batch_norm(weight, bias, nxt)
            used += 1
            nxt = seq._modules[names[i + used]] if i + used < len(names) else None
        relu = isinstance(nxt, nn.ReLU)
        used += relu
        if used > 1:
            seq._modules[names[i]] = FusedConv2d(conv, weight, bias, relu)
            for name in names[i + 1:i + used]:
                seq._modules[name] = nn.Identity()
        i += used


@torch.no_grad()
def fuse(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` for inference, with, inside every ``nn.Sequential``,
    each Conv2d followed by BatchNorm2d folded into one convolution, and each convolution
    followed by ReLU run as the single operator ``conv2d_bias_relu``.

    The copy's outputs equal the original's (in eval mode) within float32 rounding; it keeps
    the original's device and dtype, and records no gradients through fused layers. Layers
    fusion cannot see in order (outside an ``nn.Sequential``) are left as they are.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fuse: argument 'model' must be an nn.Module, got "
                        f"{type(model).__name__}")
    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        if isinstance(module, nn.Sequential):
            _fuse_sequential(module)
    return fused
