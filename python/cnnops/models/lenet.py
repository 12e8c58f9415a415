"""Small networks for 28x28 digits and 32x32 CIFAR images."""

from __future__ import annotations

from torch import nn

from .. import nn as cnn
from ._checks import check_num_classes


def simple_cnn(num_classes: int = 10) -> nn.Sequential:
    """The seed's SimpleCNN for 1x28x28 input: three 3x3 convs (1->32->64->64, padding 1),
    each followed by ReLU and 2x2 max pooling (28 -> 14 -> 7 -> 3), then fully connected
    576 -> 64 -> ``num_classes`` with dropout 0.5. 93,322 parameters for 10 classes.
    """
    check_num_classes("simple_cnn", num_classes, 64)
    return nn.Sequential(
        cnn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), cnn.MaxPool2d(2),
        cnn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), cnn.MaxPool2d(2),
        cnn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), cnn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 3 * 3, 64), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(64, num_classes),
    )


def lenet5(num_classes: int = 10) -> nn.Sequential:
    """LeNet-5 (LeCun et al. 1998) for 1x28x28 input padded to 32x32 by the first conv:
    6@5x5, 2x2 average pooling, 16@5x5, 2x2 average pooling, fully connected 400 -> 120 ->
    84 -> ``num_classes``, tanh throughout. 61,706 parameters for 10 classes.
    """
    check_num_classes("lenet5", num_classes, 84)
    return nn.Sequential(
        cnn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), cnn.AvgPool2d(2),
        cnn.Conv2d(6, 16, 5), nn.Tanh(), cnn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Tanh(),
        nn.Linear(120, 84), nn.Tanh(),
        nn.Linear(84, num_classes),
    )


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [cnn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


def cifar_cnn(num_classes: int = 10) -> nn.Sequential:
    """The seed's CIFAR-10 network for 3x32x32 input: three blocks of two 3x3 conv + batch
    norm + ReLU (64, 128, 256 channels), each closed by 2x2 max pooling and dropout, then
    global average pooling and a linear classifier. Built to pass 85% on CIFAR-10.
    """
    check_num_classes("cifar_cnn", num_classes, 256)
    layers: list[nn.Module] = []
    in_channels = 3
    for width, drop in ((64, 0.1), (128, 0.2), (256, 0.3)):
        layers += _conv_bn_relu(in_channels, width) + _conv_bn_relu(width, width)
        layers += [cnn.MaxPool2d(2), nn.Dropout(drop)]
        in_channels = width
    layers += [cnn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, num_classes)]
    return nn.Sequential(*layers)
