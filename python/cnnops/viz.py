"""Pictures: an image under the classic filters, a network's learned first-layer filters,
the feature maps of every convolution for one test image, and a confusion matrix.

Drawn with matplotlib's object API on the Agg canvas (``matplotlib.figure.Figure``, no
pyplot): no display is needed and the user's matplotlib backend is left alone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from . import filters as _filters

__all__ = ["confusion_matrix", "conv_layers", "feature_maps", "load_image",
           "plot_confusion_matrix", "plot_feature_maps", "plot_filter_bank",
           "plot_learned_filters", "visualize"]


def _figure(rows: int, cols: int, cell: float = 1.8, title_room: float = 0.5,
            size: tuple[float, float] | None = None, **grid):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise RuntimeError("pictures need matplotlib: pip install matplotlib") from error
    figure = Figure(figsize=size or (cols * cell, rows * cell + title_room),
                    layout="constrained")
    FigureCanvasAgg(figure)  # Agg draws into memory: no display, pyplot's backend untouched
    axes = figure.subplots(rows, cols, squeeze=False, gridspec_kw=grid or None)
    for ax in axes.flat:
        ax.set_axis_off()
    return figure, axes


def _save(figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def _to_display(image: Tensor, how: str = "image") -> np.ndarray:
    """A (C, H, W) or (H, W) tensor as an (H, W) or (H, W, 3) array in [0, 1].

    how: 'image' clips to [0, 1]; 'signed' maps [-m, m] to [0, 1] (zero is mid-grey);
    'magnitude' maps [0, m] to [0, 1], with m the 99.5th percentile of the absolute values
    (a few extreme pixels would leave the rest black); 'minmax' stretches min..max to [0, 1].
    """
    image = image.detach().float().cpu()
    if image.dim() == 3 and image.shape[0] == 1:
        image = image[0]
    if how in ("signed", "magnitude"):
        magnitudes = image.abs().flatten()
        if magnitudes.numel() > 1 << 20:
            magnitudes = magnitudes[torch.randperm(magnitudes.numel(),
                                                   generator=torch.Generator().manual_seed(0)
                                                   )[:1 << 20]]
        scale = torch.quantile(magnitudes, 0.995).clamp_min(1e-12)
        image = image / (2 * scale) + 0.5 if how == "signed" else image / scale
    elif how == "minmax":
        low, high = image.min(), image.max()
        image = (image - low) / (high - low).clamp_min(1e-12)
    image = image.clamp(0, 1)
    if image.dim() == 3:
        image = image.permute(1, 2, 0)
    return image.numpy()


def _imshow(ax, image: Tensor, how: str = "image", cmap: str = "gray") -> None:
    array = _to_display(image, how)
    ax.imshow(array, cmap=None if array.ndim == 3 else cmap, vmin=0, vmax=1,
              interpolation="nearest")


# --------------------------------------------------------------------------------------
# The filter bank on an image.


def load_image(source: str, max_size: int | None = 1024) -> Tensor:
    """An image as a float32 ``(C, H, W)`` tensor in [0, 1], ``C`` = 1 (grey) or 3 (RGB).

    ``source`` is a PNG/JPEG/... path, or ``'camera'``: scikit-image's bundled cameraman
    (512 x 512, grey). Larger images are shrunk to ``max_size`` on their long side.
    """
    if source == "camera":
        try:
            from skimage import data as skimage_data
        except ImportError as error:
            raise FileNotFoundError("the 'camera' image comes with scikit-image, which is not "
                                    "installed: pip install scikit-image (or give "
                                    "--image PATH)") from error
        array = skimage_data.camera()
    else:
        if not os.path.isfile(source):
            raise FileNotFoundError(f"no image file at '{source}' (give a PNG or JPEG path, "
                                    f"or 'camera')")
        from PIL import Image, UnidentifiedImageError
        try:
            with Image.open(source) as picture:
                picture = picture.convert("L" if picture.mode in ("1", "L", "I", "I;16", "F")
                                          else "RGB")
                if max_size is not None and max(picture.size) > max_size:
                    picture.thumbnail((max_size, max_size))
                array = np.array(picture)  # a writable copy
        except UnidentifiedImageError as error:
            raise FileNotFoundError(f"'{source}' is not an image file PIL can read") from error
    image = torch.from_numpy(np.ascontiguousarray(array)).float().div_(255)
    return image.unsqueeze(0) if image.dim() == 2 else image.permute(2, 0, 1).contiguous()


def plot_filter_bank(image: Tensor, path: str | os.PathLike, padding_mode: str = "replicate",
                     title: str | None = None) -> Path:
    """Writes a PNG grid: ``image`` ((C, H, W) in [0, 1]) and the image under every filter
    of :data:`cnnops.filters.BANK`, then the edge magnitude."""
    results = _filters.run_bank(image, padding_mode)
    cols = 4
    rows = -(-(len(results) + 1) // cols)
    figure, axes = _figure(rows, cols, cell=3.0)
    panels = [("original", image, "image", None)]
    for name, (output, how) in results.items():
        kernel = _filters.BANK[name][0] if name in _filters.BANK else None
        panels.append((name, output, how, kernel))
    for ax, (name, output, how, kernel) in zip(axes.flat, panels):
        _imshow(ax, output, how)
        size = f" {kernel.shape[0]}x{kernel.shape[1]}" if kernel is not None else ""
        size = "" if size.strip() in name else size
        ax.set_title(f"{name}{size}", fontsize=10)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


# --------------------------------------------------------------------------------------
# A trained network: learned filters, feature maps, confusion matrix.


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The convolution layers of ``model`` (torch.nn.Conv2d, its cnnops twin, and other
    cnnops convolution modules without children), by name, in registration order."""
    layers = []
    for name, module in model.named_modules():
        cnnops_conv = (type(module).__module__.startswith("cnnops")
                       and "Conv" in type(module).__name__ and not any(module.children()))
        if isinstance(module, nn.Conv2d) or cnnops_conv:
            layers.append((name, module))
    return layers


@torch.no_grad()
def feature_maps(model: nn.Module, image: Tensor) -> list[tuple[str, Tensor]]:
    """The output of every convolution layer for one ``(C, H, W)`` image, caught by forward
    hooks, in the order the layers ran: ``[(name, (channels, H, W))]``."""
    caught: list[tuple[str, Tensor]] = []
    hooks = []
    for name, module in conv_layers(model):
        def hook(module, inputs, output, name=name):
            caught.append((name, output[0].detach().float().cpu()))
        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(image.unsqueeze(0).to(device))
    finally:
        for handle in hooks:
            handle.remove()
        model.train(was_training)
    return caught


def _mosaic(tiles: list[np.ndarray], cols: int, gap: int = 1) -> np.ndarray:
    """Tiles of one shape, (h, w) or (h, w, 3), laid out ``cols`` to a row with ``gap``
    pixels of white between them, as one array: one image to draw instead of one axes per
    tile, which keeps a 64-channel layer to a fraction of a second."""
    height, width = tiles[0].shape[:2]
    rows = -(-len(tiles) // cols)
    shape = (rows * (height + gap) - gap, cols * (width + gap) - gap, *tiles[0].shape[2:])
    mosaic = np.full(shape, np.nan, dtype=np.float32)
    for index, tile in enumerate(tiles):
        top, left = (index // cols) * (height + gap), (index % cols) * (width + gap)
        mosaic[top:top + height, left:left + width] = tile
    if mosaic.ndim == 3:  # RGB has no 'bad' colour: white gaps
        mosaic = np.nan_to_num(mosaic, nan=1.0)
    return mosaic


def _draw_mosaic(ax, tiles: list[np.ndarray], cols: int, cmap: str) -> None:
    import matplotlib
    colours = matplotlib.colormaps[cmap].with_extremes(bad="white")
    mosaic = _mosaic(tiles, cols)
    ax.imshow(mosaic, cmap=None if mosaic.ndim == 3 else colours, vmin=0, vmax=1,
              interpolation="nearest")
    height, width = tiles[0].shape[:2]
    if height < 8:  # a number would hide a 3x3 or 5x5 filter
        return
    for index in range(len(tiles)):  # channel numbers in the tiles' top-left corners
        ax.text((index % cols) * (width + 1), (index // cols) * (height + 1), str(index),
                fontsize=6, color="white", va="top", ha="left",
                bbox={"facecolor": "black", "alpha": 0.5, "pad": 0.5, "linewidth": 0})


def plot_learned_filters(weight: Tensor, path: str | os.PathLike, title: str,
                         max_filters: int = 64) -> Path:
    """Writes a PNG of a convolution's filters, ``weight`` ``(out, in, kH, kW)``: RGB when
    ``in`` is 3, else the first input channel in grey; each filter stretched to its range."""
    weight = weight.detach().float().cpu()
    count = min(weight.shape[0], max_filters)
    cols = min(count, 8)
    tiles = [_to_display(weight[i] if weight.shape[1] == 3 else weight[i, 0], "minmax")
             for i in range(count)]
    rows = -(-count // cols)
    figure, axes = _figure(1, 1, size=(max(cols, 4) * 0.9, rows * 0.9 + 0.6))
    _draw_mosaic(axes[0, 0], tiles, cols, "gray")
    shown = "" if count == weight.shape[0] else f" (first {count} of {weight.shape[0]})"
    figure.suptitle(f"{title}{shown}", fontsize=9)
    return _save(figure, path)


def plot_feature_maps(name: str, maps: Tensor, path: str | os.PathLike,
                      image: Tensor | None = None, max_channels: int = 64) -> Path:
    """Writes a PNG of one layer's feature maps ``(channels, H, W)``, each stretched to its
    range (viridis; maps of under four pixels share one range), beside the input ``image``
    when given."""
    count = min(maps.shape[0], max_channels)
    cols = min(count, 8)
    rows = -(-count // cols)
    if maps.shape[1] * maps.shape[2] < 4:  # a pixel or two per map: compare across channels
        scaled = _to_display(maps[:count].reshape(count, -1), "minmax")
        tiles = [scaled[c].reshape(maps.shape[1:]) for c in range(count)]
    else:  # each map stretched to its own range: its pattern, not its scale
        tiles = [_to_display(maps[c], "minmax") for c in range(count)]
    figure, axes = _figure(1, 2, size=(1.6 + cols * 1.3, max(rows * 1.3, 1.6) + 0.6),
                           width_ratios=[1.3, cols * 1.3])
    if image is not None:
        _imshow(axes[0, 0], image)
        axes[0, 0].set_title("input", fontsize=8)
    _draw_mosaic(axes[0, 1], tiles, cols, "viridis")
    shown = "" if count == maps.shape[0] else f", first {count} of {maps.shape[0]} channels"
    figure.suptitle(f"{name}: {maps.shape[0]} x {maps.shape[1]} x {maps.shape[2]}{shown}",
                    fontsize=9)
    return _save(figure, path)


@torch.no_grad()
def confusion_matrix(model: nn.Module, dataset, num_classes: int, device: torch.device | str,
                     batch_size: int = 256) -> Tensor:
    """``(num_classes, num_classes)`` counts: row = true class, column = predicted."""
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    was_training = model.training
    model.eval()
    try:
        for images, labels in loader:
            # A model with more outputs than the set has classes predicts among the classes.
            predicted = model(images.to(device))[:, :num_classes].argmax(1).cpu()
            matrix += torch.bincount(labels * num_classes + predicted,
                                     minlength=num_classes * num_classes
                                     ).view(num_classes, num_classes)
    finally:
        model.train(was_training)
    return matrix


def plot_confusion_matrix(matrix: Tensor, classes: Sequence[str], path: str | os.PathLike,
                          title: str = "") -> Path:
    """Writes a PNG of a confusion matrix with the counts written in when it is small."""
    n = len(classes)
    figure, axes = _figure(1, 1, cell=max(4.0, 0.45 * n + 2), title_room=0)
    ax = axes[0, 0]
    ax.set_axis_on()
    ax.imshow(matrix.numpy(), cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=45 if max(map(len, classes)) > 2 else 0,
                  ha="right" if max(map(len, classes)) > 2 else "center", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        threshold = matrix.max().item() / 2
        for true in range(n):
            for predicted in range(n):
                count = matrix[true, predicted].item()
                if count:
                    ax.text(predicted, true, str(count), ha="center", va="center", fontsize=7,
                            color="white" if count > threshold else "black")
    accuracy = matrix.diag().sum().item() / max(matrix.sum().item(), 1)
    ax.set_title(f"{title}test accuracy {100 * accuracy:.1f}% ({matrix.sum().item()} images)",
                 fontsize=10)
    return _save(figure, path)


def _describe_layer(module: nn.Module) -> str:
    """'Conv2d 32->64 3x3' and the like."""
    weight = getattr(module, "weight", None)
    if isinstance(module, nn.Conv2d):
        kernel = "x".join(map(str, module.kernel_size))
        stride = f" stride {module.stride[0]}" if max(module.stride) > 1 else ""
        groups = f" groups {module.groups}" if module.groups > 1 else ""
        return (f"{type(module).__name__} {module.in_channels}->{module.out_channels} "
                f"{kernel}{stride}{groups}")
    shape = f" {tuple(weight.shape)}" if isinstance(weight, Tensor) else ""
    return f"{type(module).__name__}{shape}"


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "model"


def visualize(model: nn.Module, test_set, classes: Sequence[str], out_dir: str | os.PathLike,
              unnormalize=None, index: int = 0, device: torch.device | str = "cpu",
              title: str = "") -> list[Path]:
    """Writes, into ``out_dir``, the pictures of a trained ``model``:

    - ``filters.png``: the first convolution's learned filters,
    - ``feature_maps_<k>_<layer>.png``: every convolution's output for test image ``index``,
    - ``confusion_matrix.png``: the confusion matrix over ``test_set``.

    ``unnormalize`` maps a normalised ``(C, H, W)`` image back to [0, 1] for display.
    Returns the paths written.
    """
    out_dir = Path(out_dir)
    if not 0 <= index < len(test_set):
        raise IndexError(f"image index {index} is out of range: the test set has "
                         f"{len(test_set)} images")
    image, label = test_set[index]
    maps = feature_maps(model, image)
    if not maps:
        raise ValueError(f"{type(model).__name__} has no convolution layers to show")
    shown = unnormalize(image) if unnormalize is not None else image
    written = []
    first_name = maps[0][0]
    first = dict(model.named_modules())[first_name]
    written.append(plot_learned_filters(first.weight, out_dir / "filters.png",
                                        f"{title}{first_name}: learned filters "
                                        f"{tuple(first.weight.shape)}"))
    modules = dict(model.named_modules())
    for k, (name, output) in enumerate(maps):
        path = out_dir / f"feature_maps_{k:02d}_{_file_name(name)}.png"
        written.append(plot_feature_maps(f"{name} {_describe_layer(modules[name])}, test image "
                                         f"{index} (label {classes[label]})", output, path,
                                         shown))
    matrix = confusion_matrix(model, test_set, len(classes), device)
    written.append(plot_confusion_matrix(matrix, classes, out_dir / "confusion_matrix.png",
                                         title))
    return written
