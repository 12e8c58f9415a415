"""cnnops: hand-written CPU and CUDA convolution and pooling kernels for PyTorch.

The kernels are registered as operators in ``torch.ops.cnnops``, differentiable to second
order and traceable by torch.compile and torch.export; this package is their public face.
"""

from . import analysis, filters, functional, nn
from ._ops import kernel_version
from .analysis import summary
from .convert import convert
from .functional import (adaptive_avg_pool2d, adaptive_max_pool2d, avg_pool2d, conv2d,
                         depthwise_separable_conv2d, max_pool2d)
from .fuse import fuse

__version__ = "0.1.0"

__all__ = [
    "conv2d", "depthwise_separable_conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
    "adaptive_max_pool2d", "analysis", "convert", "filters", "functional", "fuse",
    "kernel_version", "nn", "summary", "__version__",
]
