"""The public reference shapes (DESIGN.md §6): the layers cnnops is measured on.

Names follow `cnnops bench`: `<network>.<layer>`, the op family going in front when
reported (e.g. `conv2d.vgg16c.b3a`). VGG blocks have two conv shapes: `a` is the block's
first conv (channels change), `b` the repeated one.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    def flops(self) -> int:
        """Multiply-adds of the forward pass, counted as two flops each."""
        out_h, out_w = self.output_hw
        per_output = 2 * (self.in_channels // self.groups) * self.kernel * self.kernel
        return self.batch * self.out_channels * out_h * out_w * per_output


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


# --------------------------------------------------------------------------------------
# pooling


@dataclass(frozen=True)
class PoolShape:
    """One pooling call: `kind` is max, avg, adaptive_avg or adaptive_max; adaptive kinds
    use `output_size`, the others kernel, stride and padding."""

    name: str
    kind: str
    batch: int
    channels: int
    height: int
    width: int
    kernel: int = 2
    stride: int = 2
    padding: int = 0
    output_size: int = 1

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.channels, self.height, self.width)

    @property
    def output_hw(self) -> tuple[int, int]:
        if self.kind.startswith("adaptive"):
            return self.output_size, self.output_size

        def size(n: int) -> int:
            return (n + 2 * self.padding - self.kernel) // self.stride + 1

        return size(self.height), size(self.width)

    def bytes_moved(self, element_size: int, backward: bool) -> int:
        """Bytes read and written by the forward pass (input, output, int64 indices for max
        pooling), plus, with backward, by the backward pass (grad_output and indices read,
        grad_input written)."""
        out_h, out_w = self.output_hw
        inputs = self.batch * self.channels * self.height * self.width
        outputs = self.batch * self.channels * out_h * out_w
        index_bytes = 8 * outputs if "max" in self.kind else 0
        total = (inputs + outputs) * element_size + index_bytes
        if backward:
            total += (outputs + inputs) * element_size + index_bytes
        return total


# The pooling layers of ResNet/VGG-style networks on 8x64x112x112, and the global average
# pooling at the head of every modern CNN.
POOL_SHAPES = [
    PoolShape("pool112.max2x2s2", "max", 8, 64, 112, 112, kernel=2, stride=2),
    PoolShape("pool112.max3x3s2p1", "max", 8, 64, 112, 112, kernel=3, stride=2, padding=1),
    PoolShape("pool112.avg2x2s2", "avg", 8, 64, 112, 112, kernel=2, stride=2),
    PoolShape("pool112.avg3x3s2p1", "avg", 8, 64, 112, 112, kernel=3, stride=2, padding=1),
    PoolShape("gap.512x7x7", "adaptive_avg", 64, 512, 7, 7, output_size=1),
    PoolShape("gmp.512x7x7", "adaptive_max", 64, 512, 7, 7, output_size=1),
]
