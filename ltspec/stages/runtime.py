"""The `ltspec.kinds.base.Runtime` a stage kind's `run` is handed: the run's context, and the operations every
kind shares (models, loaders, the training harness, weights and masks in the store), under one name each."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ltspec.hooks import Hook
from ltspec.kinds.base import DataConfig, LogEpochs, ModelConfig, Stage
from ltspec.kinds.mask import MASK
from ltspec.nets import state_on_cpu
from ltspec.pruning import Mask
from ltspec.recipe import Recipe
from ltspec.stages import harness, weights
from ltspec.stages.context import Context, loaders, model
from ltspec.store import Store


@dataclass(frozen=True)
class StageRuntime:
    ctx: Context

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    @property
    def stages(self) -> dict[str, Stage]:
        return self.ctx.stages

    @property
    def store(self) -> Store:
        return self.ctx.store

    def model(self, data: DataConfig, model_config: ModelConfig, seed: int) -> nn.Module:
        return model(data, model_config, seed)

    def loaders(self, stage: Stage, data: DataConfig, seed: int):
        return loaders(data, seed, stage.runtime, self.ctx)

    def train(self, stage: Stage, network: nn.Module, recipe: Recipe, data: DataConfig, seed: int, log: LogEpochs,
              hooks: list[Hook] = (), epochs: int | None = None):
        return harness.train(stage, self.ctx, network, recipe, data, seed, log, hooks, epochs)

    def write_weights(self, key: str, name: str, network: nn.Module) -> None:
        self.ctx.store.write_tensors(key, name, state_on_cpu(network))

    def dense_point(self, trunk: str, name: str) -> dict[str, Tensor]:
        return weights.dense_point(self.ctx, trunk, name)

    def start_weights(self, trunk: str, mask: str, start: str) -> dict[str, Tensor]:
        return weights.start_weights(self.ctx, trunk, mask, start)

    def point_weights(self, trunk: str, term: str, results: Mapping[str, str],
                      mask: Mask | None) -> dict[str, Tensor]:
        return weights.point_weights(self.ctx, trunk, term, results, mask)

    def load_mask(self, key: str, name: str = MASK) -> Mask:
        return weights.load_mask(self.ctx, key, name)

    def save_mask(self, key: str, mask: Mask, name: str = MASK) -> None:
        weights.save_mask(self.ctx, key, mask, name)
