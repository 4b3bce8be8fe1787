"""What every stage of a run shares, and how a stage's data and model configs become a dataset, a model and loaders.

The compiler emits complete configs (defaults made explicit), so nothing here falls back to a default: a missing
setting is a bug in the compiler, not a setting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ltspec import datasets
from ltspec.data import Dataset, load_dataset
from ltspec.loader import DeviceLoader
from ltspec.kinds.base import DataConfig, ModelConfig, Stage
from ltspec.nets import build_model
from ltspec.store import Store
from ltspec.tracking import Tracker

DATA_SEED = 0  # one train/test split for every run, so that seeds differ in init and batch order only
EpochCallback = Callable[[Stage, int, dict[str, float]], None]


@dataclass
class Context:
    """What every stage of a run shares: the store, the device, the plan's stages, MLflow, loaded datasets."""

    store: Store
    device: torch.device
    stages: dict[str, Stage]
    tracker: Tracker | None = None
    on_epoch: EpochCallback | None = None
    datasets: dict[tuple, Dataset] = field(default_factory=dict)
    runs: dict[str, list] | None = None  # the experiment's stage runs by key when the run began; None: not taken
    trunk_runs: dict[str, str] = field(default_factory=dict)


def dataset(data: DataConfig, runtime: dict, ctx: Context) -> Dataset:
    """The dataset, loaded once per run."""
    cache_key = (data.dataset, runtime["root"], data.validation_split)
    if cache_key not in ctx.datasets:
        ctx.datasets[cache_key] = load_dataset(data.dataset, root=runtime["root"], download=runtime["download"],
                                               validation_split=data.validation_split, seed=DATA_SEED)
    return ctx.datasets[cache_key]


def model(data: DataConfig, model: ModelConfig, seed: int) -> nn.Module:
    """The network, initialised from `seed`."""
    return build_model(**model.build_arguments(data.dataset), seed=seed)


def channels_last(data: DataConfig, runtime: dict) -> bool:
    """channels_last as asked, for image data only (a memory format of 4-D tensors)."""
    return runtime["channels_last"] and datasets.info(data.dataset).input_kind == "image"


def loaders(data: DataConfig, seed: int, runtime: dict, ctx: Context) -> tuple[DeviceLoader, dict[str, DeviceLoader]]:
    """The training loader (its batch order seeded by `seed`), and the evaluation loaders by metric prefix: `test`,
    and `val` when a split is held out."""
    loaded = dataset(data, runtime, ctx)
    common = {"mean": loaded.mean, "std": loaded.std, "device": ctx.device,
              "channels_last": channels_last(data, runtime)}
    train = DeviceLoader(loaded.train, batch_size=data.batch_size, shuffle=True, seed=seed,
                         augment=data.augmentation == "standard" and loaded.augmentable, **common)
    splits = {"test": loaded.test, "val": loaded.validation}
    return train, {name: DeviceLoader(split, batch_size=runtime["eval_batch_size"], shuffle=False, seed=0,
                                      augment=False, **common)
                   for name, split in splits.items() if split is not None}
