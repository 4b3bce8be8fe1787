"""What every stage of a run shares, and how a stage's config becomes a dataset, a model and loaders.

The compiler emits complete configs (defaults made explicit), so nothing here falls back to a default: a missing
key is a bug in the compiler, not a setting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ltspec import architectures, datasets
from ltspec.data import Dataset, DeviceLoader, load_dataset
from ltspec.nets import build_model
from ltspec.plan import Stage
from ltspec.store import Store
from ltspec.tracking import Tracker

DATA_SEED = 0  # one train/test split for every run, so that seeds differ in init and batch order only
EpochCallback = Callable[[Stage, int, dict[str, float]], None]


class StageFailed(Exception):
    """A stage that cannot finish (a diverged loss, a missing dataset); the runner goes on with the others."""

    def __init__(self, stage: Stage, message: str):
        self.stage = stage
        super().__init__(f"stage {stage.key[:10]} ({stage.describe()}): {message}")


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


@dataclass(frozen=True)
class Outcome:
    """What running a stage produced: final metrics, per-epoch history, small JSON artifacts."""

    metrics: dict[str, float]
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    artifacts: dict[str, Any] = field(default_factory=dict)


def reinit_seed(seed: int) -> int:
    """θ0' is drawn with a seed derived from the run's, never equal to another run's seed in practice."""
    return int.from_bytes(hashlib.sha256(f"reinit:{seed}".encode()).digest()[:4], "big")


def trunk_of(stage: Stage) -> str:
    return stage.key if stage.kind == "dense" else stage.labels["trunk"]


def dataset(stage: Stage, ctx: Context) -> Dataset:
    """The stage's dataset, loaded once per run."""
    data, runtime = stage.config["data"], stage.runtime
    cache_key = (data["dataset"], runtime["root"], data["validation_split"])
    if cache_key not in ctx.datasets:
        ctx.datasets[cache_key] = load_dataset(data["dataset"], root=runtime["root"], download=runtime["download"],
                                               validation_split=data["validation_split"], seed=DATA_SEED)
    return ctx.datasets[cache_key]


def model(config: dict, seed: int) -> nn.Module:
    """The config's network, initialised from `seed`; its input shape comes from the dataset table, so building a
    model never loads the data."""
    arch, data = config["model"], datasets.info(config["data"]["dataset"])
    return build_model(arch["arch"], num_classes=data.num_classes, in_channels=data.in_channels,
                       input_size=data.input_size, width=arch["width"], shortcut=arch.get("shortcut"),
                       input_kind=data.input_kind, seed=seed)


def channels_last(config: dict, runtime: dict) -> bool:
    """channels_last as asked, for image data only (a memory format of 4-D tensors)."""
    return runtime["channels_last"] and datasets.info(config["data"]["dataset"]).input_kind == "image"


def loaders(config: dict, runtime: dict, ctx: Context,
            data: Dataset) -> tuple[DeviceLoader, dict[str, DeviceLoader]]:
    """The training loader of a trunk's (or an arm's) config, and the evaluation loaders by metric prefix: `test`,
    and `val` when a split is held out."""
    common = {"mean": data.mean, "std": data.std, "device": ctx.device, "channels_last": channels_last(config, runtime)}
    train = DeviceLoader(data.train, batch_size=config["data"]["batch_size"], shuffle=True, seed=config["seed"],
                         augment=config["data"]["augmentation"] == "standard" and data.augmentable, **common)
    splits = {"test": data.test, "val": data.validation}
    return train, {name: DeviceLoader(split, batch_size=runtime["eval_batch_size"], shuffle=False, seed=0,
                                      augment=False, **common)
                   for name, split in splits.items() if split is not None}


def weight_names(model_config: dict, kinds: list[str]) -> list[str]:
    """Names of the model's weight tensors of the given kinds (conv, linear), in model order."""
    layers = architectures.prunable_layers(model_config["arch"], model_config.get("shortcut"))
    return [f"{layer.name}.weight" for layer in layers if layer.kind in kinds]
