"""The classic image filters as convolution kernels, run through :func:`cnnops.conv2d`.

Every kernel is a float32 ``(kH, kW)`` tensor applied by cross-correlation, as conv2d
computes it (so ``sobel_x`` is positive where the image gets brighter to the right).
:func:`apply` convolves each channel of an image with one kernel (a depthwise convolution,
``groups`` = channels); :func:`edge_magnitude` combines the two Sobel gradients.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_allocation, check_int, is_int
from .functional import conv2d

__all__ = ["BANK", "apply", "box_blur", "cross", "edge_magnitude", "emboss", "gaussian",
           "laplacian", "sharpen", "sobel_x", "sobel_y"]


def _kernel(rows: list[list[float]]) -> Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def sobel_x() -> Tensor:
    """Horizontal gradient (responds to vertical edges), smoothed vertically."""
    return _kernel([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])


def sobel_y() -> Tensor:
    """Vertical gradient (responds to horizontal edges), smoothed horizontally."""
    return _kernel([[-1, -2, -1], [0, 0, 0], [1, 2, 1]])


def gaussian(size: int = 3, sigma: float = 1.0) -> Tensor:
    """A ``size`` x ``size`` Gaussian blur of standard deviation ``sigma``, summing to 1."""
    if not is_int(size):
        raise TypeError(f"gaussian: argument 'size' must be a positive odd int, got {size!r}")
    if size < 1 or size % 2 == 0:
        raise ValueError(f"gaussian: argument 'size' must be a positive odd int, got {size}")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)):
        raise TypeError(f"gaussian: argument 'sigma' must be a number, got {sigma!r}")
    if not 0 < sigma < math.inf:
        raise ValueError(f"gaussian: argument 'sigma' must be positive and finite, got {sigma}")
    check_allocation("gaussian", "argument 'size'", (size, size), torch.float64)
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    line = torch.exp(-offsets**2 / (2 * sigma * sigma))
    kernel = torch.outer(line, line)
    return (kernel / kernel.sum()).float()


def laplacian() -> Tensor:
    """The 4-neighbour Laplacian: second derivative, zero on flat and linear ramps."""
    return _kernel([[0, 1, 0], [1, -4, 1], [0, 1, 0]])


def sharpen() -> Tensor:
    """The image minus its Laplacian: edges stand out, flat areas unchanged."""
    return _kernel([[0, -1, 0], [-1, 5, -1], [0, -1, 0]])


def emboss() -> Tensor:
    """Relief lit from the bottom right; sums to 1, so flat areas keep their value."""
    return _kernel([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])


def box_blur(size: int = 3) -> Tensor:
    """The mean of a ``size`` x ``size`` neighbourhood."""
    check_int("box_blur", "size", size, 1)
    check_allocation("box_blur", "argument 'size'", (size, size))
    return torch.full((size, size), 1.0 / (size * size))


def cross() -> Tensor:
    """A detector of '+' shapes: the centre row and column against the four corners. It
    sums to zero, so flat areas give 0 and a bright plus on a dark ground gives most."""
    return _kernel([[-1.25, 1, -1.25], [1, 1, 1], [-1.25, 1, -1.25]])


# name -> (kernel, how to show its output): 'signed' for outputs centred on 0 (gradients,
# the Laplacian, detectors), 'image' for those that keep the image's range (blurs, sharpen,
# emboss).
BANK: dict[str, tuple[Tensor, str]] = {
    "sobel_x": (sobel_x(), "signed"),
    "sobel_y": (sobel_y(), "signed"),
    "gaussian_3x3": (gaussian(3, 1.0), "image"),
    "gaussian_5x5": (gaussian(5, 1.0), "image"),
    "laplacian": (laplacian(), "signed"),
    "sharpen": (sharpen(), "image"),
    "emboss": (emboss(), "image"),
    "box_blur": (box_blur(3), "image"),
    "cross": (cross(), "signed"),
}

PADDING_MODES = ("replicate", "reflect", "zeros")


def apply(image: Tensor, kernel: Tensor, padding_mode: str = "replicate") -> Tensor:
    """Convolves every channel of ``image`` with ``kernel`` through :func:`cnnops.conv2d`.

    Args:
        image: ``(H, W)`` grey, ``(C, H, W)`` (grey or RGB: each channel alone) or
            ``(N, C, H, W)``; float32 or float64 (integers are converted to float32).
        kernel: ``(kH, kW)``, odd sizes.
        padding_mode: how the border is extended so that the output keeps the input's size:
            ``'replicate'`` (the edge pixel repeated: no false edges at the border),
            ``'reflect'`` or ``'zeros'``.

    Returns:
        A tensor of the same shape as ``image`` (and its float dtype and device).
    """
    for name, value in (("image", image), ("kernel", kernel)):
        if not isinstance(value, Tensor):
            raise TypeError(f"apply: argument '{name}' must be a tensor, got "
                            f"{type(value).__name__}")
        if value.is_complex():
            raise TypeError(f"apply: argument '{name}' must be real, got dtype {value.dtype}")
    if kernel.dim() != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError(f"apply: argument 'kernel' must be 2-D with odd sizes, got shape "
                         f"{tuple(kernel.shape)}")
    if kernel.device.type == "meta" and image.device.type != "meta":
        raise ValueError(f"apply: argument 'kernel' is on {kernel.device} but 'image' is on "
                         f"{image.device}; a meta kernel holds no values")
    if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
        raise ValueError(f"apply: argument 'padding_mode' must be one of {PADDING_MODES}, got "
                         f"{padding_mode!r}")
    if image.dim() not in (2, 3, 4):
        raise ValueError(f"apply: argument 'image' must be (H, W), (C, H, W) or (N, C, H, W), "
                         f"got shape {tuple(image.shape)}")
    if min(image.shape[-2:]) < 1:
        raise ValueError(f"apply: argument 'image' must have a height and width of at least "
                         f"1, got shape {tuple(image.shape)}")
    if padding_mode == "reflect" and any(k // 2 >= s for k, s in zip(kernel.shape,
                                                                       image.shape[-2:])):
        raise ValueError(f"apply: argument 'kernel' of shape {tuple(kernel.shape)} is too "
                         f"large for padding_mode='reflect' on an image of shape "
                         f"{tuple(image.shape)}: half the kernel must be smaller than the image")
    shape = image.shape
    if image.dtype in (torch.float16, torch.bfloat16) and image.device.type == "cpu":
        raise TypeError(f"apply: argument 'image' has dtype {image.dtype}, which cnnops does "
                        f"not compute in on the CPU (convert it to float32)")
    if not image.is_floating_point():
        image = image.float()
    batch = image.reshape((1,) * (4 - image.dim()) + tuple(shape))
    channels = batch.shape[1]
    weight = kernel.to(batch).expand(channels, 1, *kernel.shape).contiguous()
    pad_h, pad_w = kernel.shape[0] // 2, kernel.shape[1] // 2
    if padding_mode == "zeros":
        out = conv2d(batch, weight, padding=(pad_h, pad_w), groups=channels)
    else:
        batch = F.pad(batch, (pad_w, pad_w, pad_h, pad_h), mode=padding_mode)
        out = conv2d(batch, weight, groups=channels)
    return out.reshape(shape)


def edge_magnitude(image: Tensor, padding_mode: str = "replicate") -> Tensor:
    """``sqrt(sobel_x**2 + sobel_y**2)`` per channel; shapes as :func:`apply`."""
    gx = apply(image, sobel_x(), padding_mode)
    gy = apply(image, sobel_y(), padding_mode)
    return torch.sqrt(gx * gx + gy * gy)


def run_bank(image: Tensor, padding_mode: str = "replicate") -> dict[str, tuple[Tensor, str]]:
    """``image`` under every filter of :data:`BANK`, then :func:`edge_magnitude`: name ->
    (output, how to show it: 'signed', 'image' or 'magnitude')."""
    results = {name: (apply(image, kernel, padding_mode), display)
               for name, (kernel, display) in BANK.items()}
    results["edge_magnitude"] = (edge_magnitude(image, padding_mode), "magnitude")
    return results
