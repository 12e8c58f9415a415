"""MobileNetV1 (Howard et al. 2017): a 3x3 stem, then 13 depthwise-separable blocks."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from .. import nn as cnn
from .._checks import check_allocation
from ._checks import check_num_classes

# (output channels, stride) of the 13 depthwise-separable blocks at width 1.0.
BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


class SeparableBlock(nn.Sequential):
    """Depthwise 3x3 -> batch norm -> ReLU -> pointwise 1x1 -> batch norm -> ReLU.

    The two convolutions are the halves of a bias-free
    :class:`cnnops.nn.DepthwiseSeparableConv2d`, run with the batch norms between them (so
    :func:`cnnops.fuse` can fold each norm into its half and put the ReLUs in the epilogues).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        separable = cnn.DepthwiseSeparableConv2d(in_channels, out_channels, 3, stride=stride,
                                                 padding=1, bias=False)
        super().__init__(OrderedDict([
            ("depthwise", separable.depthwise), ("bn1", nn.BatchNorm2d(in_channels)),
            ("relu1", nn.ReLU(inplace=True)),
            ("pointwise", separable.pointwise), ("bn2", nn.BatchNorm2d(out_channels)),
            ("relu2", nn.ReLU(inplace=True)),
        ]))


class MobileNetV1(nn.Module):
    """``features`` (stem and blocks), global average pooling and a linear ``classifier``."""

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0) -> None:
        super().__init__()
        if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)):
            raise TypeError(f"mobilenet_v1: argument 'width_mult' must be a number, got "
                            f"{width_mult!r}")
        if not 0 < width_mult < math.inf:
            raise ValueError(f"mobilenet_v1: argument 'width_mult' must be positive and finite, "
                             f"got {width_mult}")

        def width(channels: int) -> int:
            return max(8, int(channels * width_mult))

        # the pointwise weights dominate: refuse a width no memory holds before building any
        channels = [width(32)] + [width(c) for c, _ in BLOCKS]
        pointwise = sum(a * b for a, b in zip(channels, channels[1:]))
        check_allocation("mobilenet_v1", "argument 'width_mult'", (pointwise,))
        check_num_classes("mobilenet_v1", num_classes, channels[-1])

        in_channels = width(32)
        layers: list[nn.Module] = [nn.Sequential(
            cnn.Conv2d(3, in_channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True))]
        for channels, stride in BLOCKS:
            layers.append(SeparableBlock(in_channels, width(channels), stride))
            in_channels = width(channels)
        self.features = nn.Sequential(*layers)
        self.avgpool = cnn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.classifier.weight, 0, 0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def mobilenet_v1(num_classes: int = 1000, width_mult: float = 1.0) -> MobileNetV1:
    """MobileNetV1 for 3x224x224 input (any size of 32 or more works); 4,231,976 parameters
    at width 1.0 with 1000 classes. ``width_mult`` scales every layer's channels."""
    return MobileNetV1(num_classes, width_mult)
