"""The model zoo, built from cnnops layers (plus torch's Linear, BatchNorm, activations and
Dropout): the seed's SimpleCNN and CIFAR network, LeNet-5, VGG and MobileNetV1."""

from .lenet import cifar_cnn, lenet5, simple_cnn
from .mobilenet import mobilenet_v1
from .vgg import vgg11, vgg13, vgg16, vgg19

__all__ = ["simple_cnn", "lenet5", "cifar_cnn", "vgg11", "vgg13", "vgg16", "vgg19",
           "mobilenet_v1"]
