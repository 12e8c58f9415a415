"""The public reference shapes (DESIGN.md §6): the layers cnnops is measured on.

One home for `cnnops bench`, the pytest-benchmark suites of benchmarks/ (whose shapes.py
re-exports this module) and anything else that times cnnops.

Names follow `cnnops bench`: `<network>.<layer>`, the op family going in front when
reported (e.g. `conv2d.vgg16c.b3a`, `depthwise.mbv1.dw56s2`). VGG blocks have two conv
shapes: `a` is the block's first conv (channels change), `b` the repeated one. MobileNetV1
layers are named by the input size of their depthwise conv, `s2` marking the strided ones;
the pointwise conv `pwX` is the one that follows the depthwise conv `dwX`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConvShape", "PoolShape", "SeparableShape",
    "SIMPLE_CNN", "VGG16_CIFAR", "VGG16_224", "CONV_SHAPES",
    "MOBILENET_V1", "MBV1_DEPTHWISE", "MBV1_POINTWISE",
    "POOL_SHAPES", "GLOBAL_POOL_SHAPES",
]


@dataclass(frozen=True)
class ConvShape:
    name: str
    batch: int
    in_channels: int
    height: int
    width: int
    out_channels: int
    kernel: int = 3
    stride: int = 1
    padding: int = 1
    groups: int = 1

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.in_channels, self.height, self.width)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.out_channels, self.in_channels // self.groups, self.kernel, self.kernel)

    @property
    def output_hw(self) -> tuple[int, int]:
        def size(n: int) -> int:
            return (n + 2 * self.padding - self.kernel) // self.stride + 1

        return size(self.height), size(self.width)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.out_channels, *self.output_hw)

    @property
    def flops(self) -> int:
        """Multiply-adds of the forward pass, counted as two flops each."""
        out_h, out_w = self.output_hw
        per_output = 2 * (self.in_channels // self.groups) * self.kernel * self.kernel
        return self.batch * self.out_channels * out_h * out_w * per_output

    def describe(self) -> str:
        """E.g. '32x128x8x8 -> 256, 3x3 s1 p1' (and 'g128' for grouped convolutions)."""
        n, c, h, w = self.input_shape
        text = (f"{n}x{c}x{h}x{w} -> {self.out_channels}, {self.kernel}x{self.kernel} "
                f"s{self.stride} p{self.padding}")
        return text + (f" g{self.groups}" if self.groups > 1 else "")


@dataclass(frozen=True)
class PoolShape:
    """A pooling layer: a kernel_size x kernel_size window, or (kernel 0) global pooling to
    one value per channel."""

    name: str
    batch: int
    channels: int
    height: int
    width: int
    kernel: int = 2
    stride: int = 2
    padding: int = 0

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.channels, self.height, self.width)

    @property
    def output_hw(self) -> tuple[int, int]:
        if self.kernel == 0:
            return 1, 1

        def size(n: int) -> int:
            return (n + 2 * self.padding - self.kernel) // self.stride + 1

        return size(self.height), size(self.width)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.channels, *self.output_hw)

    def describe(self) -> str:
        n, c, h, w = self.input_shape
        if self.kernel == 0:
            return f"{n}x{c}x{h}x{w} -> 1x1"
        return f"{n}x{c}x{h}x{w}, {self.kernel}x{self.kernel} s{self.stride} p{self.padding}"


@dataclass(frozen=True)
class SeparableShape:
    """One MobileNet block: a 3x3 depthwise conv (groups = channels), then a 1x1 pointwise
    conv."""

    name: str
    depthwise: ConvShape
    pointwise: ConvShape

    @property
    def flops(self) -> int:
        return self.depthwise.flops + self.pointwise.flops

    def describe(self) -> str:
        d = self.depthwise
        n, c, h, w = d.input_shape
        return f"{n}x{c}x{h}x{w} -> {self.pointwise.out_channels}, dw 3x3 s{d.stride} + pw"


# The seed's SimpleCNN (LeNet-style, MNIST-sized), batch 64.
SIMPLE_CNN = [
    ConvShape("simplecnn.conv1", 64, 1, 28, 28, 32),
    ConvShape("simplecnn.conv2", 64, 32, 14, 14, 64),
    ConvShape("simplecnn.conv3", 64, 64, 7, 7, 64),
]

# VGG-16 on CIFAR-sized input (3x32x32), batch 32.
VGG16_CIFAR = [
    ConvShape("vgg16c.b1a", 32, 3, 32, 32, 64),
    ConvShape("vgg16c.b1b", 32, 64, 32, 32, 64),
    ConvShape("vgg16c.b2a", 32, 64, 16, 16, 128),
    ConvShape("vgg16c.b2b", 32, 128, 16, 16, 128),
    ConvShape("vgg16c.b3a", 32, 128, 8, 8, 256),
    ConvShape("vgg16c.b3b", 32, 256, 8, 8, 256),
    ConvShape("vgg16c.b4a", 32, 256, 4, 4, 512),
    ConvShape("vgg16c.b4b", 32, 512, 4, 4, 512),
    ConvShape("vgg16c.b5", 32, 512, 2, 2, 512),
]

# VGG-16 at ImageNet size (3x224x224), batch 1.
VGG16_224 = [
    ConvShape("vgg16.b1a", 1, 3, 224, 224, 64),
    ConvShape("vgg16.b1b", 1, 64, 224, 224, 64),
    ConvShape("vgg16.b2a", 1, 64, 112, 112, 128),
    ConvShape("vgg16.b2b", 1, 128, 112, 112, 128),
    ConvShape("vgg16.b3a", 1, 128, 56, 56, 256),
    ConvShape("vgg16.b3b", 1, 256, 56, 56, 256),
    ConvShape("vgg16.b4a", 1, 256, 28, 28, 512),
    ConvShape("vgg16.b4b", 1, 512, 28, 28, 512),
    ConvShape("vgg16.b5", 1, 512, 14, 14, 512),
]

CONV_SHAPES = SIMPLE_CNN + VGG16_CIFAR + VGG16_224


def _mobilenet_v1_blocks(batch: int) -> list[SeparableShape]:
    """MobileNetV1 (224x224 input) has 13 separable blocks; these are its 9 distinct ones
    (the five 512x14x14 stride-1 blocks are one shape)."""
    # (input channels, input size, depthwise stride, pointwise output channels)
    layers = [(32, 112, 1, 64), (64, 112, 2, 128), (128, 56, 1, 128), (128, 56, 2, 256),
              (256, 28, 1, 256), (256, 28, 2, 512), (512, 14, 1, 512), (512, 14, 2, 1024),
              (1024, 7, 1, 1024)]
    blocks = []
    for channels, size, stride, out_channels in layers:
        suffix = f"{size}" + ("s2" if stride == 2 else "")
        depthwise = ConvShape(f"mbv1.dw{suffix}", batch, channels, size, size, channels,
                              kernel=3, stride=stride, padding=1, groups=channels)
        out = depthwise.output_hw[0]
        pointwise = ConvShape(f"mbv1.pw{suffix}", batch, channels, out, out, out_channels,
                              kernel=1, stride=1, padding=0)
        blocks.append(SeparableShape(f"mbv1.ds{suffix}", depthwise, pointwise))
    return blocks


# MobileNetV1's depthwise-separable blocks at batch 8.
MOBILENET_V1 = _mobilenet_v1_blocks(batch=8)
MBV1_DEPTHWISE = [block.depthwise for block in MOBILENET_V1]
MBV1_POINTWISE = [block.pointwise for block in MOBILENET_V1]

# Pooling on a VGG/ResNet-sized activation: 2x2 stride 2 (VGG) and 3x3 stride 2 padding 1
# (ResNet's stem).
POOL_SHAPES = [
    PoolShape("2x2", 8, 64, 112, 112, kernel=2, stride=2, padding=0),
    PoolShape("3x3s2", 8, 64, 112, 112, kernel=3, stride=2, padding=1),
]

# Global pooling before a classifier: ResNet/VGG-sized 512x7x7 at batch 64.
GLOBAL_POOL_SHAPES = [PoolShape("global", 64, 512, 7, 7, kernel=0, stride=0)]
