"""The train stage: an arm (or an IMP round's retraining) — start weights ⊙ mask, trained with the mask enforced
after every step."""

from __future__ import annotations

from dataclasses import dataclass, field

from ltspec.kinds.base import (OMITTED_IF_NONE, DataConfig, LogEpochs, ModelConfig, Outcome, Runtime, Stage, StageKind,
                               final_metrics, where_on_mask)
from ltspec.recipe import Recipe

FINAL = "final"  # the trained weights, in the stage's store folder


@dataclass(frozen=True)
class TrainConfig:
    """An arm: its start point on the trunk (`init`, `reinit`, `trained`, `rewind@k`) and its recipe.

    `data_seed`: the batch order and augmentation of a copy of the arm trained under other SGD noise (instability
    analysis); None, the arm itself, trains on the trunk's seed, and its key stays as it was before copies existed.
    """

    data: DataConfig
    model: ModelConfig
    seed: int
    start: str
    train: Recipe
    data_seed: int | None = field(default=None, metadata=OMITTED_IF_NONE)

    @property
    def batch_seed(self) -> int:
        """The seed of the batch order (and augmentation) the stage trains on."""
        return self.seed if self.data_seed is None else self.data_seed


def run(stage: Stage, runtime: Runtime, log: LogEpochs) -> Outcome:
    from ltspec.pruning import EnforceMask

    config: TrainConfig = stage.config
    trunk, mask_key = stage.parents
    network = runtime.model(config.data, config.model, config.seed)
    network.load_state_dict(runtime.start_weights(trunk, mask_key, config.start))
    mask = runtime.load_mask(mask_key)
    network.to(runtime.device)
    history, result = runtime.train(stage, network, config.train, config.data, config.batch_seed, log,
                                    hooks=[EnforceMask(mask, network)])
    runtime.write_weights(stage.key, FINAL, network)
    return Outcome({**final_metrics(history, result), "sparsity": mask.sparsity()}, history)


def describe(stage: Stage) -> str:
    copy = f" copy {stage.labels['copy']}" if stage.labels.get("copy") else ""
    return f"train {stage.labels.get('arm') or 'imp round'}{copy} on {where_on_mask(stage)}"


def logged(stage: Stage, log_weights: bool) -> list[str]:
    """The final weights, when the spec asks to log weights (they are always in the store)."""
    return [f"{FINAL}.pt"] if log_weights else []


KIND = StageKind("train", TrainConfig, run, describe, place="mask", logged=logged)
