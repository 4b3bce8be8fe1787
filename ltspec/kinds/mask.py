"""The mask stage: the generator named by the config's `kind` makes the mask (`ltspec.masks`); this module hands
it what it declared it consumes, and stores the mask and, for a generator that trains, the network it trained.

The config of a mask stage (`MaskConfig`) is the generator's own canonical table (a mapping: the generator, which
may be a plugin's, owns its vocabulary; every table holds `kind`, `scope`, `prunable` and `exclude`) and, for a
generator that trains (ADMM, gradual), what it trains on, typed like every other training stage's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ltspec import datasets, masks
from ltspec.hooks import Hook
from ltspec.kinds import dense
from ltspec.kinds.base import (FLATTENED, OMITTED_IF_NONE, DataConfig, LogEpochs, ModelConfig, Outcome, Runtime, Stage,
                               StageKind, where_on_mask)
from ltspec.kinds.train import FINAL
from ltspec.recipe import Recipe
from ltspec.strict import NetworkMode

MASK, MASK_EXCLUDED = "mask", "mask_excluded"  # the mask's tensors, and the names of the layers it keeps dense
# The network a generator trained and pruned (ADMM, gradual): the `trained` start of arms on its masks. The file is
# called `weights` in every store written so far, so the name stays.
GENERATOR_TRAINED = "weights"
TRAINING = ("data", "model", "seed", "train")  # what a generator that trains puts in its table beside its settings


@dataclass(frozen=True)
class MaskConfig:
    settings: Mapping[str, Any] = field(metadata=FLATTENED)
    data: DataConfig | None = field(default=None, metadata=OMITTED_IF_NONE)
    model: ModelConfig | None = field(default=None, metadata=OMITTED_IF_NONE)
    seed: int | None = field(default=None, metadata=OMITTED_IF_NONE)
    train: Recipe | None = field(default=None, metadata=OMITTED_IF_NONE)

    @classmethod
    def of(cls, table: Mapping[str, Any]) -> MaskConfig:
        """A generator's table as its stage's config: the training fields typed, when the generator trains."""
        if "train" not in table:
            return cls(dict(table))
        return cls({name: value for name, value in table.items() if name not in TRAINING},
                   **{name: table[name] for name in TRAINING})

    def table(self) -> dict[str, Any]:
        """The table the generator wrote, as its `make` reads it."""
        trained_on = {name: getattr(self, name) for name in TRAINING if getattr(self, name) is not None}
        return {**self.settings, **trained_on}


@dataclass
class Sources:
    """`ltspec.masks.base.Sources` for one mask stage: each input loaded when asked for, and only if declared."""

    stage: Stage
    runtime: Runtime
    log: LogEpochs
    consumes: frozenset[str]

    @property
    def device(self):
        return self.runtime.device

    @property
    def snapshots(self) -> bool:
        return self.stage.runtime.get("snapshots", False)

    @property
    def trunk(self) -> Stage:
        return self.runtime.stages[self.stage.trunk]

    def network(self, point: str, *, mode: NetworkMode):
        self._require(point)
        trunk = self.trunk.config
        network = self.runtime.model(trunk.data, trunk.model, trunk.seed)
        network.load_state_dict(self._weights(point))
        return network.to(self.runtime.device).train(mode == "train")

    def prunable(self, network) -> tuple[dict, list[str]]:
        from ltspec.pruning import select_prunable

        params = dict(network.named_parameters())
        settings = self.stage.config.settings
        names = self.trunk.config.model.weight_names(settings["prunable"])
        _, excluded = select_prunable(names, settings["exclude"])
        return {name: params[name] for name in names}, excluded

    def previous_mask(self):
        self._require("ticket")
        return self.runtime.load_mask(self.stage.parents[1]) if len(self.stage.parents) > 1 else None

    def source_mask(self):
        self._require("source")
        return self.runtime.load_mask(self.stage.parents[0])

    def batches(self) -> Iterator:
        self._require("data")
        return self._training_loader().epoch(0)

    def steps_per_epoch(self) -> int:
        self._require("data")
        return len(self._training_loader())

    def input_shape(self) -> tuple[int, ...]:
        return datasets.info(self.trunk.config.data.dataset).input_shape

    def train(self, network, hooks: list[Hook]) -> list:
        """Train under the mask stage's own key (its checkpoints) with the config's `train` recipe, on the data and
        seed the config carries (a generator that consumes `recipe` puts the trunk's `base` in its config)."""
        self._require("recipe")
        config = self.stage.config
        history, _ = self.runtime.train(self.stage, network, config.train, config.data, config.seed, self.log,
                                        hooks=hooks)
        return history

    def _training_loader(self):
        trunk = self.trunk.config
        train, _ = self.runtime.loaders(self.stage, trunk.data, trunk.seed)
        return train

    def _weights(self, point: str) -> dict:
        if point != "ticket":
            return self.runtime.dense_point(self.trunk.key, point)
        ticket = self.runtime.stages[self.stage.parents[0]]
        return self.runtime.store.read_tensors(ticket.key, dense.TRAINED if ticket.kind == dense.KIND else FINAL)

    def _require(self, what: str) -> None:
        if what not in self.consumes:
            kind = self.stage.config.settings["kind"]
            raise RuntimeError(f"mask generator `{kind}` asked for `{what}`, which it does not declare in `consumes` "
                               f"({sorted(self.consumes)})")


def snapshot_name(epoch: int) -> str:
    """`mask@3`: the mask at its target a generator that prunes along a run drew after epoch 3 (`Made.snapshots`)."""
    return f"{MASK}@{epoch}"


def run(stage: Stage, runtime: Runtime, log: LogEpochs) -> Outcome:
    generator = masks.generator(stage.config.settings["kind"])
    made = generator.make(stage.config.table(), Sources(stage, runtime, log, generator.consumes))
    runtime.save_mask(stage.key, made.mask)
    for epoch, snapshot in made.snapshots.items():
        runtime.save_mask(stage.key, snapshot, snapshot_name(epoch))
    if made.trained is not None:
        runtime.store.write_tensors(stage.key, GENERATOR_TRAINED, made.trained)
    return Outcome({"sparsity": made.mask.sparsity(), "density": made.mask.density()}, made.history,
                   artifacts={"layer_density": made.mask.layer_density()})


def describe(stage: Stage) -> str:
    return f"mask {where_on_mask(stage)}"


def logged(stage: Stage, log_weights: bool) -> list[str]:
    """The mask itself, small enough to keep with its run."""
    return [f"{MASK}.pt"]


KIND = StageKind("mask", MaskConfig, run, describe, place="generator", logged=logged)
