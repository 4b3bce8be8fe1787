"""The dense stage: a trunk's θ0, θ0', the rewind points θk its children need, and θT after T epochs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ltspec.hooks import Hook
from ltspec.kinds.base import (OMITTED_IF_NONE, DataConfig, LogEpochs, ModelConfig, Outcome, Runtime, Stage, StageKind,
                               final_metrics, sweep_point)
from ltspec.recipe import Recipe

INIT, REINIT, TRAINED = "init", "reinit", "trained"


@dataclass(frozen=True)
class DenseConfig:
    """A dense run. `replay_until`: the same run replayed from θ0 to that epoch, to recover a rewind point a
    trunk did not keep (its own checkpoints, so a replay never touches the trunk's)."""

    data: DataConfig
    model: ModelConfig
    seed: int
    train: Recipe
    replay_until: int | None = field(default=None, metadata=OMITTED_IF_NONE)


def reinit_seed(seed: int) -> int:
    """θ0' is drawn with a seed derived from the run's, never equal to another run's seed in practice."""
    return int.from_bytes(hashlib.sha256(f"reinit:{seed}".encode()).digest()[:4], "big")


class RewindPoints(Hook):
    """Store θk after epoch k for every k a child rewinds to (once: a resumed run finds them stored)."""

    name = "rewind_points"

    def __init__(self, stage: Stage, runtime: Runtime, network):
        self.stage, self.runtime, self.network = stage, runtime, network
        self.saves = set(stage.runtime["saves"])

    def end_epoch(self, epoch: int, values: dict[str, float]) -> None:
        name = f"rewind@{epoch}"
        if epoch in self.saves and not self.runtime.store.has(self.stage.key, name):
            self.runtime.write_weights(self.stage.key, name, self.network)


def run(stage: Stage, runtime: Runtime, log: LogEpochs) -> Outcome:
    config: DenseConfig = stage.config
    network = runtime.model(config.data, config.model, config.seed)
    runtime.write_weights(stage.key, INIT, network)
    runtime.write_weights(stage.key, REINIT, runtime.model(config.data, config.model, reinit_seed(config.seed)))
    history, result = runtime.train(stage, network, config.train, config.data, config.seed, log,
                                    hooks=[RewindPoints(stage, runtime, network)])
    runtime.write_weights(stage.key, TRAINED, network)
    return Outcome(final_metrics(history, result), history)


def describe(stage: Stage) -> str:
    return f"dense seed={stage.labels.get('seed')} {sweep_point(stage.labels)}".strip()


KIND = StageKind("dense", DenseConfig, run, describe, place="trunk", run_name=describe)
