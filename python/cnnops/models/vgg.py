"""VGG (Simonyan and Zisserman 2014), key for key compatible with torchvision.models.vgg*."""

from __future__ import annotations

import torch
from torch import nn

from .. import nn as cnn
from .._checks import check_bool
from ._checks import check_num_classes

# Output channels per conv; "M" is a 2x2 max pooling.
CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """``features`` (3x3 convs, optional batch norm, ReLU, 2x2 max pooling), ``avgpool``
    (adaptive, to 7x7: any input of 32x32 or more fits the classifier, CIFAR-sized included)
    and ``classifier`` (4096, 4096, ``num_classes`` with dropout), as torchvision builds it.
    """

    def __init__(self, config: list[int | str], num_classes: int = 1000,
                 batch_norm: bool = False, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for item in config:
            if item == "M":
                layers.append(cnn.MaxPool2d(kernel_size=2, stride=2))
                continue
            layers.append(cnn.Conv2d(in_channels, item, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(item))
            layers.append(nn.ReLU(inplace=True))
            in_channels = item
        self.features = nn.Sequential(*layers)
        self.avgpool = cnn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        self._initialise()

    def _initialise(self) -> None:
        # torchvision's initialisation, so fresh models train alike.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.constant_(module.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _vgg(name: str, num_classes: int, batch_norm: bool) -> VGG:
    check_num_classes(name, num_classes, 4096)
    check_bool(name, "batch_norm", batch_norm)
    return VGG(CONFIGS[name], num_classes=num_classes, batch_norm=batch_norm)


def vgg11(num_classes: int = 1000, batch_norm: bool = False) -> VGG:
    """VGG-11 (configuration A); 132,863,336 parameters for 1000 classes."""
    return _vgg("vgg11", num_classes, batch_norm)


def vgg13(num_classes: int = 1000, batch_norm: bool = False) -> VGG:
    """VGG-13 (configuration B); 133,047,848 parameters for 1000 classes."""
    return _vgg("vgg13", num_classes, batch_norm)


def vgg16(num_classes: int = 1000, batch_norm: bool = False) -> VGG:
    """VGG-16 (configuration D); 138,357,544 parameters for 1000 classes."""
    return _vgg("vgg16", num_classes, batch_norm)


def vgg19(num_classes: int = 1000, batch_norm: bool = False) -> VGG:
    """VGG-19 (configuration E); 143,667,240 parameters for 1000 classes."""
    return _vgg("vgg19", num_classes, batch_norm)
