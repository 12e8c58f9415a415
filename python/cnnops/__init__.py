"""cnnops: hand-written CPU and CUDA convolution kernels for PyTorch.

The kernels are registered as operators in ``torch.ops.cnnops``, differentiable to second
order and traceable by torch.compile and torch.export; this package is their public face.
"""

from . import functional
from ._ops import kernel_version
from .functional import conv2d

# depthwise-separable convolution (issue 4)
from . import nn
from .functional import depthwise_separable_conv2d

__version__ = "0.1.0"

__all__ = ["conv2d", "functional", "kernel_version", "__version__"]
__all__ += ["depthwise_separable_conv2d", "nn"]
