"""The mask stage: the generator named by the config's `kind` makes the mask (`ltspec.masks`); this module hands
it what it declared it consumes, and stores the mask and, for a generator that trains, the network it trained."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from torch import Tensor, nn

from ltspec import datasets, masks
from ltspec.masks import Made
from ltspec.plan import Stage
from ltspec.pruning import Mask, select_prunable
from ltspec.settings import NetworkMode
from ltspec.stages import harness
from ltspec.stages.context import Context, Outcome, dataset, loaders, model, weight_names
from ltspec.stages.harness import LogEpochs
from ltspec.stages.weights import FINAL, GENERATOR_TRAINED, dense_point, load_mask, save_mask
from ltspec.hooks import Hook

KIND = "mask"


@dataclass
class Sources:
    """`ltspec.masks.base.Sources` for one mask stage: each input loaded when asked for, and only if declared."""

    stage: Stage
    ctx: Context
    log: LogEpochs
    consumes: frozenset[str]

    @property
    def device(self):
        return self.ctx.device

    @property
    def trunk(self) -> Stage:
        return self.ctx.stages[self.stage.labels["trunk"]]

    def network(self, point: str, *, mode: NetworkMode) -> nn.Module:
        self._require(point)
        network = model(self.trunk.config, self.trunk.config["seed"])
        network.load_state_dict(self._weights(point))
        return network.to(self.ctx.device).train(mode == "train")

    def prunable(self, network: nn.Module) -> tuple[dict[str, nn.Parameter], list[str]]:
        params = dict(network.named_parameters())
        names = weight_names(self.trunk.config["model"], self.stage.config["prunable"])
        _, excluded = select_prunable(names, self.stage.config["exclude"])
        return {name: params[name] for name in names}, excluded

    def previous_mask(self) -> Mask | None:
        self._require("ticket")
        return load_mask(self.ctx, self.stage.parents[1]) if len(self.stage.parents) > 1 else None

    def batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        self._require("data")
        train, _ = loaders(self.trunk.config, self.stage.runtime, self.ctx, dataset(self.trunk, self.ctx))
        return train.epoch(0)

    def steps_per_epoch(self) -> int:
        self._require("data")
        train, _ = loaders(self.trunk.config, self.stage.runtime, self.ctx, dataset(self.trunk, self.ctx))
        return len(train)

    def input_shape(self) -> tuple[int, ...]:
        data = datasets.info(self.trunk.config["data"]["dataset"])
        side = (data.input_size,) * (2 if data.input_kind == "image" else 1)
        return (data.in_channels, *side)

    def train(self, network: nn.Module, hooks: list[Hook]) -> list:
        """Train under the mask stage's own key (its checkpoints) with the config's `train` recipe, on the data and
        seed the config carries (a generator that consumes `recipe` puts the trunk's `base` in its config)."""
        self._require("recipe")
        history, _ = harness.train(self.stage, self.ctx, network, self.stage.config["train"], self.log, hooks=hooks)
        return history

    def _weights(self, point: str) -> dict[str, Tensor]:
        if point != "ticket":
            return dense_point(self.ctx, self.trunk.key, point)
        ticket = self.ctx.stages[self.stage.parents[0]]
        return self.ctx.store.read_tensors(ticket.key, "trained" if ticket.kind == "dense" else FINAL)

    def _require(self, what: str) -> None:
        if what not in self.consumes:
            raise RuntimeError(f"mask generator `{self.stage.config['kind']}` asked for `{what}`, which it does not "
                               f"declare in `consumes` ({sorted(self.consumes)})")


def run(stage: Stage, ctx: Context, log: LogEpochs) -> Outcome:
    generator = masks.generator(stage.config["kind"])
    made: Made = generator.make(stage.config, Sources(stage, ctx, log, generator.consumes))
    save_mask(ctx, stage.key, made.mask)
    if made.trained is not None:
        ctx.store.write_tensors(stage.key, GENERATOR_TRAINED, made.trained)
    return Outcome({"sparsity": made.mask.sparsity(), "density": made.mask.density()}, made.history,
                   artifacts={"layer_density": made.mask.layer_density()})
