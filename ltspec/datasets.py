"""The datasets ltspec knows: one table of facts, the home of every question about a dataset by name.

The spec checker (is this model right for these inputs?), the compiler (does augmentation apply, and so enter the
stage key?), the Ray runner and the loaders all read this table, so they cannot disagree. It imports nothing heavy:
`ltspec validate` reads it without torch. Each entry names its loader as `module:function`, imported only when the
data is loaded; a plugin registers more entries through the `ltspec.datasets` entry point group, each a
`DatasetInfo` (`ltspec.plugins.load` reads them; loading a spec that names one does it).

A loader is called as `loader(entry, root: Path, download: bool, seed: int, **options)`, `entry` its own
`DatasetInfo`, and returns a `ltspec.data.Dataset`; `seed` is the data seed (one train/test split for every run),
`options` are loader-specific keyword arguments a notebook may pass through `ltspec.data.load_dataset`.

Every dataset also has two small stand-ins, named by a suffix and derived from its entry, for the rehearsal of a
study (`ltspec.rehearsal`): `<name>-sample`, its first examples, and `<name>-synthetic`, synthetic inputs of its
shape and classes for when the data is not there. They are not listed in the table (a spec's vocabulary stays the
real datasets) but `info` and `known` answer for them, in any process, so that a stage names its data the way it
names any dataset.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class DatasetInfo:
    """What the rest of ltspec may know about a dataset without loading it."""

    name: str
    input_kind: str  # "image" (N, C, H, W) or "signal" (N, C, L)
    in_channels: int
    input_size: int  # image side, or signal length
    num_classes: int
    augmentable: bool  # random crops and flips keep the label (natural images): the paper's augmentation applies
    downloadable: bool  # `data.download = true` can fetch it
    loader: str  # "module:function"
    description: str = ""
    train_size: int | None = None  # examples, for the time estimate before a run (None: unknown)
    test_size: int | None = None
    stand_in_for: str | None = None  # a stand-in's real dataset
    download_url: str | None = None  # what `download = true` fetches; `ltspec run` checks its host answers first

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example: (C, H, W) for images, (C, L) for signals."""
        return (self.in_channels, *(self.input_size,) * (2 if self.input_kind == "image" else 1))


DATASETS: dict[str, DatasetInfo] = {info.name: info for info in (
    DatasetInfo("cifar10", "image", 3, 32, 10, augmentable=True, downloadable=True, loader="ltspec.data:load_cifar",
                description="CIFAR-10 through torchvision (download = true fetches it, about 170 MB)",
                train_size=50_000, test_size=10_000,
                download_url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    DatasetInfo("cifar100", "image", 3, 32, 100, augmentable=True, downloadable=True, loader="ltspec.data:load_cifar",
                description="CIFAR-100 through torchvision (download = true fetches it, about 170 MB)",
                train_size=50_000, test_size=10_000,
                download_url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
    DatasetInfo("tiny-imagenet", "image", 3, 64, 200, augmentable=True, downloadable=False,
                loader="ltspec.data:load_tiny_imagenet",
                description="Tiny ImageNet from root/tiny-imagenet-200, fetched and arranged by hand",
                train_size=100_000, test_size=10_000),
    DatasetInfo("digits", "image", 1, 8, 10, augmentable=False, downloadable=False,
                loader="ltspec.data:load_digits",
                description="scikit-learn's 1797 8x8 handwritten digits (1x8x8, 10 classes), split 1437 train / 360 "
                            "test, shipped with scikit-learn: LeNet-300-100 reaches about 97-98% test accuracy in the "
                            "quickstart's 12 epochs",
                train_size=1_437, test_size=360),
    DatasetInfo("mnist1d", "signal", 1, 40, 10, augmentable=False, downloadable=False,
                loader="ltspec.data:load_mnist1d",
                description="MNIST-1D (Greydanus 2020): 4000 train and 1000 test signals of length 40 (1 channel, 10 "
                            "classes), generated locally: conv1d reaches about 94% test accuracy in 20 epochs, an MLP "
                            "about 66%, which leaves room between pruning methods",
                train_size=4_000, test_size=1_000),
    DatasetInfo("synthetic", "image", 3, 32, 10, augmentable=False, downloadable=False,
                loader="ltspec.data:load_synthetic",
                description="256 train and 128 test 3x32x32 images of 10 classes (chance: 10%), a coarse class "
                            "pattern under uniform noise, made from the seed in a blink: for tests and smoke runs, not "
                            "for findings; an MLP reaches 100% test accuracy within 10 epochs",
                train_size=256, test_size=128),
)}


# A stand-in is two batches of the rehearsal's batch size (`ltspec.rehearsal.BATCH_SIZE`) and one evaluation batch.
STAND_IN_SIZE = (8, 8)
STAND_IN_LOADERS = {"sample": "ltspec.data:load_sample", "synthetic": "ltspec.data:load_synthetic_stand_in"}


class DatasetError(Exception):
    """A dataset that cannot be loaded as asked: files missing or corrupted, an unknown name, a bad argument."""


class UnknownDataset(ValueError):
    """A dataset name that no entry of the table (built-in or plugin) carries."""


def info(name: str) -> DatasetInfo:
    """The table entry of a dataset, built in or registered by a plugin (`ltspec.plugins.load`), or of a stand-in
    of one (`stand_in`)."""
    if name in DATASETS:
        return DATASETS[name]
    real, _, kind = name.rpartition("-")
    if real in DATASETS and kind in STAND_IN_LOADERS:
        return stand_in(real, kind)
    close = difflib.get_close_matches(name, list(DATASETS), n=1)
    hint = f"did you mean `{close[0]}`?" if close else "expected one of " + ", ".join(DATASETS)
    raise UnknownDataset(f"unknown dataset `{name}`; {hint}")


def known(name: str) -> bool:
    """Whether `info` has an entry for the name."""
    try:
        info(name)
    except UnknownDataset:
        return False
    return True


def stand_in(name: str, kind: str) -> DatasetInfo:
    """A small dataset standing in for `name` in a rehearsal, with its input shape, classes and augmentation, so
    that the real networks build and train on it: `sample`, its first `STAND_IN_SIZE` train and test examples
    (from where the real one lives); `synthetic`, as many synthetic examples of its shape and classes, made from
    the seed (for when the real one is not there)."""
    real = DATASETS[name]
    what = "the first examples" if kind == "sample" else "synthetic examples of the shape and classes"
    train, test = STAND_IN_SIZE
    return replace(real, name=f"{name}-{kind}", downloadable=False, download_url=None, loader=STAND_IN_LOADERS[kind],
                   description=f"{train} train and {test} test examples, {what} of {name}: a rehearsal's stand-in",
                   train_size=train, test_size=test, stand_in_for=name)


def register(name: str, entry: DatasetInfo) -> None:
    """Add a dataset (a plugin's); a name already taken is refused, so that a plugin never shadows a built-in."""
    if not isinstance(entry, DatasetInfo):
        raise TypeError(f"a dataset plugin must be a ltspec.datasets.DatasetInfo, got {type(entry).__name__}")
    if entry.name != name:
        raise ValueError(f"the entry point is named `{name}` but the dataset `{entry.name}`")
    known = DATASETS.get(entry.name)
    if known is not None and known != entry:
        raise ValueError(f"dataset `{entry.name}` is registered twice")
    DATASETS[entry.name] = entry
