"""cnnops: hand-written CPU and CUDA convolution kernels for PyTorch.

The kernels are registered as operators in ``torch.ops.cnnops``, differentiable to second
order and traceable by torch.compile and torch.export; this package is their public face.
"""

from . import analysis, filters, functional, nn
from ._ops import kernel_version
from .analysis import summary
from .convert import convert
from .functional import conv2d
from .fuse import fuse

__version__ = "0.1.0"

__all__ = ["analysis", "conv2d", "convert", "functional", "fuse", "kernel_version", "nn", "summary",
           "__version__"]
