"""Datasets held in memory: each loader reads or makes one dataset and returns its splits as tensors.

A split is a pair of tensors, uint8 images or float signals with int64 labels, that the device loader
(`ltspec.loader`) moves to the device once. Everything here that draws at random (the validation subset, the digits
train/test split, the synthetic inputs) draws from a generator seeded by the data seed and the purpose
(`derive_seed`), so that every run given the same data seed sees the same examples.

torchvision, scikit-learn and mnist1d are imported inside the loaders (and `ltspec.download`) that need them, so
that importing this module costs no more than importing torch. A dataset that cannot be loaded as asked raises
`ltspec.datasets.DatasetError`; a download reaches the network only when a spec asks for it.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ltspec import datasets
from ltspec.datasets import DatasetError, DatasetInfo
from ltspec.download import download_archive

# Per-channel pixel mean and standard deviation of the training images, in [0, 1] units. CIFAR's are the
# standard values; some code uses std 0.2023/0.1994/0.2010 (a mean of per-image stds), these are the pixel stds.
_PUBLISHED_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@dataclass(frozen=True)
class Split:
    """One split, whole, as two tensors.

    x is uint8 (N, C, H, W) for images, kept in raw pixel units so that it is four times smaller than float on the
    device and so that crop padding happens in pixel space; float32 (N, 1, L) for 1-D signals. y is int64 (N,).
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"split has {len(self.x)} inputs but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Dataset:
    """A dataset in memory: its splits, their per-channel mean and std (in the units of x after dividing uint8 by
    255), and `info`, the facts of its row in `ltspec.datasets` (classes, input shape, whether crops and flips keep
    the label), which the rest of ltspec reads without loading it. The splits are checked against those facts, so a
    loader cannot state them a second time, differently."""

    info: DatasetInfo
    train: Split
    test: Split
    validation: Split | None
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        for split in (self.train, self.test, self.validation):
            if split is None or not len(split):
                continue
            if tuple(split.x.shape[1:]) != self.info.input_shape:
                raise DatasetError(f"{self.info.name}: examples of shape {tuple(split.x.shape[1:])}, but its entry "
                                   f"says {self.info.input_shape}")
            if not 0 <= int(split.y.min()) <= int(split.y.max()) < self.info.num_classes:
                raise DatasetError(f"{self.info.name}: labels outside 0..{self.info.num_classes - 1}, the classes "
                                   "its entry says it has")

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def in_channels(self) -> int:
        return self.info.in_channels

    @property
    def input_size(self) -> int:
        return self.info.input_size

    @property
    def augmentable(self) -> bool:
        return self.info.augmentable


def load_dataset(
    name: str,
    *,
    root: str | Path,
    download: bool = False,
    validation_split: float = 0.0,
    seed: int = 0,
    num_classes: int | None = None,
    **options,
) -> Dataset:
    """Load a dataset by name (`ltspec.datasets`, built in or a plugin's) into memory.

    seed is the data seed: it picks the validation subset, the digits train/test split and the synthetic draw.
    Pass the same data seed to every run that should be compared on the same test set. mnist1d ignores it: it is
    always generated with the package's own fixed seed, so that it is the standard MNIST-1D. num_classes, when
    given, must be the dataset's number of classes. `options` go to the dataset's loader (synthetic:
    `synthetic_shape`, `synthetic_size`, `synthetic_classes`).
    """
    try:
        entry = datasets.info(name)
    except datasets.UnknownDataset as error:
        raise DatasetError(str(error)) from None
    if not 0.0 <= validation_split < 1.0:
        raise DatasetError(f"validation_split must be in [0, 1), got {validation_split}")
    module, _, function = entry.loader.partition(":")
    dataset = getattr(importlib.import_module(module), function)(entry, Path(root), download, seed, **options)
    if num_classes is not None and num_classes != dataset.num_classes:
        raise DatasetError(f"{name} has {dataset.num_classes} classes, but num_classes = {num_classes} was asked")
    if validation_split == 0.0:
        return dataset
    train, validation = _carve_validation(dataset.train, validation_split, seed)
    return replace(dataset, train=train, validation=validation)


def load_cifar(entry: DatasetInfo, root: Path, download: bool, seed: int) -> Dataset:
    """CIFAR-10/100 from torchvision's on-disk format under `root`; with `download`, the archive is fetched from the
    table's URL first if the files are not there (`download_archive`: all or nothing)."""
    from torchvision.datasets import CIFAR10, CIFAR100

    name = entry.name
    source = CIFAR10 if name == "cifar10" else CIFAR100
    try:
        train, test = [source(root, train=is_train) for is_train in (True, False)]
    except RuntimeError as error:
        if not download:
            raise DatasetError(
                f"{name} was not found, or is corrupted, in {root / source.base_folder}. Set data.download = true "
                f"in the spec to fetch it there (about 170 MB), or put the extracted python version of the dataset "
                f"(the folder {source.base_folder}/ from {source.filename}) under {root}."
            ) from error
        download_archive(entry, root, source.tgz_md5)
        train, test = [source(root, train=is_train) for is_train in (True, False)]
    mean, std = _PUBLISHED_STATS[name]
    return Dataset(entry, _cifar_split(train.data, train.targets), _cifar_split(test.data, test.targets), None, mean,
                   std)


def _cifar_split(images: np.ndarray, labels: list[int]) -> Split:
    return Split(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels, dtype=torch.int64))


def load_tiny_imagenet(entry: DatasetInfo, root: Path, download: bool, seed: int) -> Dataset:
    """Tiny ImageNet from root/tiny-imagenet-200/{train,val}/<class>/.../*.JPEG, with val in class folders.

    The archive unpacks train/ in that layout already (train/<wnid>/images/*.JPEG) but val/ as one images/ folder
    plus val_annotations.txt; move each val image into val/<wnid>/ first. The test images have no labels and are
    not used: val serves as the test split.
    """
    from torchvision.datasets import ImageFolder

    folder = root / "tiny-imagenet-200"
    if not ((folder / "train").is_dir() and (folder / "val").is_dir()):
        raise DatasetError(
            f"tiny-imagenet was not found in {folder}: it cannot be downloaded automatically. Fetch "
            f"tiny-imagenet-200.zip by hand, unzip it under {root}, and move each image of val/images/ into "
            f"val/<wnid>/ as listed in val/val_annotations.txt, so that train/ and val/ both have one folder per class."
        )
    train, test = ImageFolder(folder / "train"), ImageFolder(folder / "val")
    if train.classes != test.classes:
        raise DatasetError(
            f"tiny-imagenet in {folder}: val/ has {len(test.classes)} class folders and train/ {len(train.classes)}, "
            f"or their names differ; val/ must be arranged in the same class folders as train/."
        )
    train_split = _image_folder_split(train)
    mean, std = _channel_stats(train_split.x)
    return Dataset(entry, train_split, _image_folder_split(test), None, mean, std)


def _image_folder_split(folder) -> Split:
    images = np.stack([np.asarray(folder.loader(path)) for path, _ in folder.samples])
    return Split(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.tensor(folder.targets))


DIGITS = Path(__file__).with_name("digits.npz")  # scikit-learn's digits (Alpaydin & Kaynak 1998), 8x8 pixels 0..16


def load_digits(entry: DatasetInfo, root: Path, download: bool, seed: int) -> Dataset:
    """scikit-learn's 8x8 handwritten digits: tiny and shipped with the package, for quick offline runs.

    The package keeps its own copy (`digits.npz`, 45 KB), so reading it costs no scikit-learn import (a second);
    the train/test split is scikit-learn's stratified `train_test_split`, reproduced draw for draw."""
    with np.load(DIGITS) as stored:
        raw, labels = stored["images"], stored["labels"].astype(np.int64)
    images = np.round(raw * (255 / 16)).astype(np.uint8)[:, None]  # pixel values 0..16 -> 0..255
    train_index, test_index = stratified_split(labels, 0.2, derive_seed(seed, "digits") % 2**32)
    train_x, test_x, train_y, test_y = images[train_index], images[test_index], labels[train_index], labels[test_index]
    train = Split(torch.from_numpy(train_x), torch.from_numpy(train_y).long())
    mean, std = _channel_stats(train.x)
    return Dataset(entry, train, Split(torch.from_numpy(test_x), torch.from_numpy(test_y).long()), None, mean, std)


def load_mnist1d(entry: DatasetInfo, root: Path, download: bool, seed: int) -> Dataset:
    """MNIST-1D (Greydanus 2020), generated locally with the package's default arguments (4000 train, 1000 test).

    make_dataset reseeds numpy's and Python's global generators; their states are restored afterwards so that
    loading data does not change the randomness of the caller.
    """
    from mnist1d.data import make_dataset

    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        generated = make_dataset()
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    train = _signal_split(generated["x"], generated["y"])
    mean, std = _channel_stats(train.x)
    return Dataset(entry, train, _signal_split(generated["x_test"], generated["y_test"]), None, mean, std)


def _signal_split(signals: np.ndarray, labels: np.ndarray) -> Split:
    return Split(torch.from_numpy(signals).float()[:, None], torch.from_numpy(labels).long())


def load_synthetic(entry: DatasetInfo, root: Path, download: bool, seed: int, *,
                   synthetic_shape: tuple[int, ...] = (3, 32, 32), synthetic_size: tuple[int, int] = (256, 128),
                   synthetic_classes: int = 10) -> Dataset:
    """Random uint8 inputs of shape (C, H, W) or (C, L) whose class shows through the noise.

    Each class has a random coarse pattern (at most 4 cells per side); an input is the mean of its class pattern,
    blown up to full size, and uniform noise. A small network learns this from a few hundred samples, so tests can
    see training raise test accuracy. Crops and flips move the pattern, so the dataset is not augmentable.
    """
    shape, sizes, num_classes = synthetic_shape, synthetic_size, synthetic_classes
    if len(shape) not in (2, 3) or len(shape) == 3 and shape[1] != shape[2]:
        raise DatasetError(f"synthetic_shape must be (C, H, W) with H = W or (C, L), got {shape}")
    generator = torch.Generator().manual_seed(derive_seed(seed, "synthetic"))
    count = sum(sizes)
    y = torch.randint(0, num_classes, (count,), generator=generator)
    coarse = [min(side, 4) for side in shape[1:]]
    patterns = torch.randint(0, 256, (num_classes, shape[0], *coarse), generator=generator)
    signal = F.interpolate(patterns.float(), size=shape[1:], mode="nearest")[y]
    noise = torch.randint(0, 256, (count, *shape), generator=generator)
    x = ((signal + noise) / 2).to(torch.uint8)
    train = Split(x[: sizes[0]], y[: sizes[0]])
    mean, std = _channel_stats(train.x)
    drawn = replace(entry, input_kind="image" if len(shape) == 3 else "signal", in_channels=shape[0],
                    input_size=shape[-1], num_classes=num_classes)
    return Dataset(drawn, train, Split(x[sizes[0] :], y[sizes[0] :]), None, mean, std)


def load_sample(entry: DatasetInfo, root: Path, download: bool, seed: int) -> Dataset:
    """A rehearsal's stand-in (`ltspec.datasets.stand_in`): the first examples of each split of the real dataset,
    read from where it lives (never downloaded: a rehearsal runs offline), normalised as the real one is."""
    real = load_dataset(entry.stand_in_for, root=root, seed=seed)
    train, test = entry.train_size, entry.test_size
    return replace(real, info=entry, train=Split(real.train.x[:train], real.train.y[:train]),
                   test=Split(real.test.x[:test], real.test.y[:test]))


def load_synthetic_stand_in(entry: DatasetInfo, root: Path, download: bool, seed: int) -> Dataset:
    """A rehearsal's stand-in for a dataset that is not there: `load_synthetic` inputs of the real one's shape and
    classes, as many as the stand-in's sizes, augmented as the real one would be (crops and flips run on them)."""
    made = load_synthetic(entry, root, download, seed, synthetic_shape=entry.input_shape,
                          synthetic_size=(entry.train_size, entry.test_size), synthetic_classes=entry.num_classes)
    return replace(made, info=entry)


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of a split's inputs, in the units the loader normalises (uint8 / 255).

    Accumulated in float64 over chunks of samples, so that Tiny ImageNet's 100,000 images never exist as floats.
    """
    unit = 255.0 if x.dtype == torch.uint8 else 1.0
    sums = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros(x.shape[1], dtype=torch.float64)
    for chunk in x.split(4096):
        values = chunk.transpose(0, 1).reshape(x.shape[1], -1).double() / unit
        sums += values.sum(dim=1)
        squares += values.square().sum(dim=1)
    count = x.numel() // x.shape[1]
    mean = sums / count
    std = (squares / count - mean.square()).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _carve_validation(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    count = round(len(train) * fraction)
    if not 0 < count < len(train):
        raise DatasetError(f"validation_split = {fraction} leaves {count} of {len(train)} training samples")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(derive_seed(seed, "validation")))
    kept, held_out = order[count:], order[:count]
    return Split(train.x[kept], train.y[kept]), Split(train.x[held_out], train.y[held_out])


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices as scikit-learn's `train_test_split(..., test_size=test_fraction, stratify=labels,
    random_state=seed)` draws them (StratifiedShuffleSplit: per-class counts by its `_approximate_mode`, then one
    permutation per class and one of each side, all from one RandomState), so that results made with scikit-learn's
    split stay the same. tests/test_data.py checks it against scikit-learn."""
    rng = np.random.RandomState(seed)
    n_test = math.ceil(test_fraction * len(labels))
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    train_counts = _approximate_mode(counts, len(labels) - n_test, rng)
    test_counts = _approximate_mode(counts - train_counts, n_test, rng)
    train, test = [], []
    for index in range(len(classes)):
        shuffled = members[index].take(rng.permutation(counts[index]), mode="clip")
        train.extend(shuffled[: train_counts[index]])
        test.extend(shuffled[train_counts[index]: train_counts[index] + test_counts[index]])
    return rng.permutation(train), rng.permutation(test)


def _approximate_mode(counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of `draws` each class gets: its floored share, then one more for the largest remainders, ties
    broken at random (scikit-learn's `sklearn.utils.extmath._approximate_mode`)."""
    continuous = counts / counts.sum() * draws
    floored = np.floor(continuous)
    missing = int(draws - floored.sum())
    remainder = continuous - floored
    for value in np.sort(np.unique(remainder))[::-1] if missing > 0 else ():
        (tied,) = np.where(remainder == value)
        take = min(len(tied), missing)
        floored[rng.choice(tied, size=take, replace=False)] += 1
        missing -= take
        if missing == 0:
            break
    return floored.astype(int)


def derive_seed(seed: int, *purpose: object) -> int:
    """A 63-bit seed for one purpose, so that streams drawn for different purposes or epochs are unrelated."""
    digest = hashlib.sha256(":".join(str(part) for part in (int(seed), *purpose)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
