"""The evaluate stage: the accuracy of the pruned network right after pruning, before any retraining — θT ⊙ m, or
for a generator that trains (ADMM, gradual) its own trained network ⊙ m, the network it actually pruned."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ltspec.kinds.base import DataConfig, LogEpochs, ModelConfig, Outcome, Runtime, Stage, StageKind, where_on_mask
from ltspec.kinds.dense import TRAINED


@dataclass(frozen=True)
class EvaluateConfig:
    data: DataConfig
    model: ModelConfig
    precision: Literal["fp32", "bf16"]


def run(stage: Stage, runtime: Runtime, log: LogEpochs) -> Outcome:
    from ltspec.pruning import EnforceMask
    from ltspec.training import evaluate

    trunk_key, mask_key = stage.parents
    trunk = runtime.stages[trunk_key].config
    network = runtime.model(trunk.data, trunk.model, trunk.seed)
    network.load_state_dict(runtime.start_weights(trunk_key, mask_key, TRAINED))
    mask = runtime.load_mask(mask_key)
    EnforceMask(mask, network.to(runtime.device))
    _, evaluation = runtime.loaders(stage, trunk.data, trunk.seed)
    result = evaluate(network, evaluation["test"].epoch(0), precision=stage.config.precision)
    return Outcome({"test_accuracy": result.accuracy, "test_loss": result.loss, "sparsity": mask.sparsity()})


def describe(stage: Stage) -> str:
    return f"evaluate trained*mask on {where_on_mask(stage)}"


KIND = StageKind("evaluate", EvaluateConfig, run, describe, place="mask")
