"""Data sets for ``cnnops train``: one that ships with scikit-learn, one made on the fly, and
the classic real ones read from a local folder.

    digits          scikit-learn's bundled handwritten digits (1,797 real 8x8 scans, no
                    download), resized to 28x28; a fixed, stratified 80/20 train/test split
    shapes          3x32x32 pictures of six shapes on noisy backgrounds, generated on the fly
                    from the seed (no download, any size)
    mnist, fashion_mnist, cifar10
                    the real sets through torchvision.datasets, from a local folder
                    (``data_dir``); ``download=True`` fetches them where there is a network

Every set yields ``(image, label)`` with ``image`` a normalised float32 tensor of shape
``(C, H, W)``. :func:`load` adapts the pictures to the model when asked: grey to RGB (the
channel repeated), RGB to grey (luminance), and a bilinear resize.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset, TensorDataset

__all__ = ["DATASETS", "DataError", "DatasetInfo", "ShapesDataset", "load"]

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "shapes")

# ITU-R 601 luma weights, as PIL's convert("L") and torchvision's Grayscale use them.
_LUMA = (0.299, 0.587, 0.114)

# The split of the digits set is part of the data set, not of a training run: the same
# 360 test images whatever the training seed, so accuracies compare across runs.
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2


class DataError(RuntimeError):
    """A data set that cannot be had: a missing folder or file, a missing package."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a loaded data set is, as the model sees it.

    ``mean`` and ``std`` are per channel of the images as yielded (after any channel
    conversion): ``image * std + mean`` recovers a picture in [0, 1].
    """

    name: str
    classes: tuple[str, ...]
    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def unnormalize(self, image: Tensor) -> Tensor:
        """``(C, H, W)`` or ``(N, C, H, W)`` normalised images back to [0, 1]."""
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=image.dtype, device=image.device).view(shape)
        std = torch.tensor(self.std, dtype=image.dtype, device=image.device).view(shape)
        return (image * std + mean).clamp(0, 1)


# --------------------------------------------------------------------------------------
# Adapting pictures to a model: channels, size, normalisation.


class _Adapt:
    """Turns [0, 1] images of ``source_channels`` into normalised images of ``channels``
    channels and ``size`` x ``size`` pixels. Works on (C, H, W) and (N, C, H, W)."""

    def __init__(self, source_channels: int, mean: Sequence[float], std: Sequence[float],
                 channels: int, size: int) -> None:
        self.source_channels, self.channels, self.size = source_channels, channels, size
        if source_channels == channels:
            mean, std = tuple(mean), tuple(std)
        elif source_channels == 1 and channels == 3:
            mean, std = tuple(mean) * 3, tuple(std) * 3
        elif source_channels == 3 and channels == 1:
            # Approximate for std, exact for the mean; only the scale of the input changes.
            mean = (sum(w * m for w, m in zip(_LUMA, mean)),)
            std = (sum(w * s for w, s in zip(_LUMA, std)),)
        else:
            raise DataError(f"cannot turn {source_channels}-channel images into {channels} "
                            f"channels (only grey <-> RGB)")
        self.mean, self.std = mean, std
        self._mean = torch.tensor(mean).view(-1, 1, 1)
        self._std = torch.tensor(std).view(-1, 1, 1)

    def __call__(self, images: Tensor) -> Tensor:
        batched = images.dim() == 4
        if not batched:
            images = images.unsqueeze(0)
        if self.source_channels == 1 and self.channels == 3:
            images = images.expand(-1, 3, -1, -1)
        elif self.source_channels == 3 and self.channels == 1:
            luma = torch.tensor(_LUMA, dtype=images.dtype).view(1, 3, 1, 1)
            images = (images * luma).sum(1, keepdim=True)
        if images.shape[-2:] != (self.size, self.size):
            shrinking = images.shape[-1] > self.size
            images = F.interpolate(images, size=(self.size, self.size), mode="bilinear",
                                   align_corners=False, antialias=shrinking)
        images = (images - self._mean) / self._std
        return images if batched else images.squeeze(0)


class _ImageSet(Dataset):
    """Stored [0, 1] (or uint8) images adapted one at a time as they are read."""

    def __init__(self, images: Tensor, labels: Tensor, adapt: _Adapt) -> None:
        self.images, self.labels, self.adapt = images, labels, adapt

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image = self.images[index]
        if image.dtype == torch.uint8:
            image = image.float() / 255
        return self.adapt(image), int(self.labels[index])


def _limit(dataset: Dataset, limit: int | None) -> Dataset:
    if limit is None or limit >= len(dataset):
        return dataset
    return Subset(dataset, range(limit))


# --------------------------------------------------------------------------------------
# digits: scikit-learn's bundled set.


def _load_digits(channels: int, size: int) -> tuple[Dataset, Dataset, DatasetInfo]:
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as error:
        raise DataError("the 'digits' data set comes with scikit-learn, which is not "
                        "installed: pip install scikit-learn (or pip install 'cnnops[train]')"
                        ) from error
    digits = load_digits()
    images = torch.from_numpy(digits.images).float().div_(16).unsqueeze(1)  # N x 1 x 8 x 8
    labels = torch.from_numpy(digits.target).long()
    train_index, test_index = train_test_split(
        np.arange(len(labels)), test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED,
        stratify=digits.target)
    # Resized to the model's size first, so the statistics are those of what it sees.
    resize = _Adapt(1, (0.0,), (1.0,), channels=1, size=size)
    images = resize(images)
    train_images = images[torch.from_numpy(train_index)]
    mean, std = train_images.mean().item(), train_images.std().item()
    adapt = _Adapt(1, (mean,), (std,), channels, size)
    info = DatasetInfo("digits", tuple(str(d) for d in range(10)), channels, size,
                       adapt.mean, adapt.std)
    splits = []
    for index in (train_index, test_index):
        index = torch.from_numpy(index)
        splits.append(TensorDataset(adapt(images[index]).contiguous(), labels[index]))
    return splits[0], splits[1], info


# --------------------------------------------------------------------------------------
# shapes: generated on the fly.

SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond")
# Per-channel statistics of 2,000 generated training pictures.
SHAPES_MEAN, SHAPES_STD = (0.32, 0.32, 0.33), (0.23, 0.23, 0.23)


class ShapesDataset(Dataset):
    """``length`` RGB pictures of one of :data:`SHAPES` each, of random colour, size and
    place on a noisy background of another colour. Picture ``i`` is a pure function of
    ``(seed, split, i)``: drawn when read, the same every time.

    Yields ``(image, label)``: a float32 ``(3, 32, 32)`` picture in [0, 1] passed through
    ``adapt`` when given, and the index of its shape in :data:`SHAPES`.
    """

    SIZE = 32

    def __init__(self, length: int, seed: int = 0, split: str = "train",
                 adapt: _Adapt | None = None) -> None:
        self.length, self.seed, self.adapt = length, seed, adapt
        self._split = {"train": 0, "test": 1}[split]
        centre = np.arange(self.SIZE) + 0.5
        self._y, self._x = np.meshgrid(centre, centre, indexing="ij")

    def __len__(self) -> int:
        return self.length

    def _mask(self, shape: int, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
        name = SHAPES[shape]
        if name == "circle":
            return dx * dx + dy * dy <= r * r
        if name == "square":
            return np.maximum(abs(dx), abs(dy)) <= 0.8 * r
        if name == "triangle":  # apex up, base at the bottom
            return (abs(dy) <= r) & (abs(dx) <= (dy + r) / 2)
        if name == "cross":
            arm = r / 3
            return ((abs(dx) <= arm) & (abs(dy) <= r)) | ((abs(dy) <= arm) & (abs(dx) <= r))
        if name == "ring":
            distance = np.sqrt(dx * dx + dy * dy)
            return (distance <= r) & (distance >= 0.55 * r)
        return abs(dx) + abs(dy) <= r  # diamond

    def draw(self, index: int) -> tuple[Tensor, int]:
        """Picture ``index`` in [0, 1], before ``adapt``, and its label."""
        if not 0 <= index < self.length:
            raise IndexError(f"ShapesDataset: index {index} out of range 0..{self.length - 1}")
        rng = np.random.default_rng([self.seed, self._split, index])
        label = int(rng.integers(len(SHAPES)))
        r = rng.uniform(6, 11)
        cx, cy = rng.uniform(r + 1, self.SIZE - r - 1, size=2)
        mask = self._mask(label, self._x - cx, self._y - cy, r)
        background = rng.uniform(0.0, 0.5, size=3)
        foreground = rng.uniform(0.0, 1.0, size=3)
        # Keep the shape visible: brighter than the background by 0.4 on average.
        foreground = np.minimum(
            foreground + max(0.0, background.mean() + 0.4 - foreground.mean()), 1.0)
        image = np.where(mask, foreground[:, None, None], background[:, None, None])
        image = image + rng.normal(0, 0.06, size=image.shape)
        image = torch.from_numpy(np.clip(image, 0, 1).astype(np.float32))
        return image, label

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image, label = self.draw(index)
        return (self.adapt(image) if self.adapt is not None else image), label


# --------------------------------------------------------------------------------------
# mnist, fashion_mnist, cifar10: torchvision, from a local folder.

# name -> (torchvision class, folder under data_dir, files expected there, channels,
# native size, mean, std, class names)
_REAL = {
    "mnist": ("MNIST", "MNIST/raw",
              ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
              1, 28, (0.1307,), (0.3081,), tuple(str(d) for d in range(10))),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw",
                      ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
                      1, 28, (0.2860,), (0.3530,),
                      ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                       "sneaker", "bag", "boot")),
    "cifar10": ("CIFAR10", "cifar-10-batches-py",
                ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                 "data_batch_5", "test_batch", "batches.meta"),
                3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck")),
}


def _fetch_hint(name: str, data_dir: str) -> str:
    return (f"Fetch it (needs a network) with: cnnops train --dataset {name} "
            f"--data-dir {data_dir} --download")


def _load_real(name: str, data_dir: str, download: bool, channels: int,
               size: int) -> tuple[Dataset, Dataset, DatasetInfo]:
    class_name, folder, files, source_channels, _, mean, std, classes = _REAL[name]
    where = os.path.join(data_dir, folder)
    missing = [f for f in files if not os.path.isfile(os.path.join(where, f))]
    if missing and not download:
        if not os.path.isdir(data_dir):
            found = f"the folder '{data_dir}' does not exist"
        elif not os.path.isdir(where):
            found = f"'{where}' does not exist"
        else:
            found = f"'{where}' lacks {', '.join(missing)}"
        raise DataError(f"{name}: {found}. Expected {', '.join(files)} in '{where}'. "
                        f"{_fetch_hint(name, data_dir)}")
    try:
        import torchvision.datasets
    except ImportError as error:
        raise DataError(f"the '{name}' data set is read through torchvision, which is not "
                        f"installed: pip install torchvision (a build matching torch "
                        f"{torch.__version__})") from error
    dataset_class = getattr(torchvision.datasets, class_name)
    splits = []
    try:
        for train in (True, False):
            splits.append(dataset_class(data_dir, train=train, download=download))
    except (RuntimeError, OSError) as error:  # "Dataset not found or corrupted", no network
        detail = " ".join(str(error).split())
        if download:
            raise DataError(f"{name}: could not download it into '{data_dir}' ({detail}). "
                            f"Without a network, copy {', '.join(files)} into '{where}' "
                            f"from a machine that has one") from error
        raise DataError(f"{name}: torchvision could not read '{where}' ({detail}). "
                        f"{_fetch_hint(name, data_dir)}") from error
    adapt = _Adapt(source_channels, mean, std, channels, size)
    info = DatasetInfo(name, classes, channels, size, adapt.mean, adapt.std)
    result = []
    for split in splits:
        images = torch.as_tensor(np.asarray(split.data))  # uint8, N x H x W (x 3)
        images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)
        result.append(_ImageSet(images, torch.as_tensor(split.targets), adapt))
    return result[0], result[1], info


# --------------------------------------------------------------------------------------


def load(name: str = "digits", *, data_dir: str = "data", download: bool = False,
         seed: int = 0, channels: int | None = None, size: int | None = None,
         limit: int | None = None, shapes_sizes: tuple[int, int] = (6000, 1200),
         ) -> tuple[Dataset, Dataset, DatasetInfo]:
    """The train and test splits of a data set, and what it is.

    Args:
        name: one of :data:`DATASETS`.
        data_dir: the folder holding mnist, fashion_mnist and cifar10 (torchvision's layout:
            ``MNIST/raw/``, ``FashionMNIST/raw/``, ``cifar-10-batches-py/``).
        download: fetch those into ``data_dir`` when missing (needs a network).
        seed: the seed of the shapes set (the digits split is fixed).
        channels, size: the model's input, ``channels`` x ``size`` x ``size``; by default
            the set's own (1 x 28 for digits and the MNISTs, 3 x 32 for shapes and CIFAR-10).
        limit: keep only the first ``limit`` images of each split.
        shapes_sizes: the number of train and test pictures of the shapes set.

    Returns:
        ``(train, test, info)``; the splits yield ``(image (C, H, W) float32, label)``.

    Raises:
        DataError: the data set is missing, with what was expected where and how to fetch it.
    """
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    if limit is not None and limit < 1:
        raise DataError(f"limit must be at least 1, got {limit}")
    if name == "digits":
        train, test, info = _load_digits(channels or 1, size or 28)
    elif name == "shapes":
        adapt = _Adapt(3, SHAPES_MEAN, SHAPES_STD, channels or 3, size or 32)
        n_train, n_test = shapes_sizes
        if limit is not None:
            n_train, n_test = min(n_train, limit), min(n_test, limit)
        train = ShapesDataset(n_train, seed, "train", adapt)
        test = ShapesDataset(n_test, seed, "test", adapt)
        info = DatasetInfo("shapes", SHAPES, adapt.channels, adapt.size, adapt.mean, adapt.std)
    else:
        native = _REAL[name]
        train, test, info = _load_real(name, data_dir, download, channels or native[3],
                                       size or native[4])
    return _limit(train, limit), _limit(test, limit), info

