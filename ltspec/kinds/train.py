"""The train stage: an arm (or an IMP round's retraining) — start weights ⊙ mask, trained with the mask enforced
after every step."""

from __future__ import annotations

from dataclasses import dataclass

from ltspec.kinds.base import (DataConfig, LogEpochs, ModelConfig, Outcome, Runtime, Stage, StageKind, final_metrics,
                               where_on_mask)
from ltspec.recipe import Recipe

FINAL = "final"  # the trained weights, in the stage's store folder


@dataclass(frozen=True)
class TrainConfig:
    """An arm: its start point on the trunk (`init`, `reinit`, `trained`, `rewind@k`) and its recipe."""

    data: DataConfig
    model: ModelConfig
    seed: int
    start: str
    train: Recipe


def run(stage: Stage, runtime: Runtime, log: LogEpochs) -> Outcome:
    from ltspec.pruning import EnforceMask

    config: TrainConfig = stage.config
    trunk, mask_key = stage.parents
    network = runtime.model(config.data, config.model, config.seed)
    network.load_state_dict(runtime.start_weights(trunk, mask_key, config.start))
    mask = runtime.load_mask(mask_key)
    network.to(runtime.device)
    history, result = runtime.train(stage, network, config.train, config.data, config.seed, log,
                                    hooks=[EnforceMask(mask, network)])
    runtime.write_weights(stage.key, FINAL, network)
    return Outcome({**final_metrics(history, result), "sparsity": mask.sparsity()}, history)


def describe(stage: Stage) -> str:
    return f"train {stage.labels.get('arm') or 'imp round'} on {where_on_mask(stage)}"


def logged(stage: Stage, log_weights: bool) -> list[str]:
    """The final weights, when the spec asks to log weights (they are always in the store)."""
    return [f"{FINAL}.pt"] if log_weights else []


KIND = StageKind("train", TrainConfig, run, describe, place="mask", logged=logged)
