"""The evaluate stage: the accuracy of the pruned network right after pruning, before any retraining — θT ⊙ m, or
for a generator that trains (ADMM, gradual) its own trained network ⊙ m, the network it actually pruned."""

from __future__ import annotations

from ltspec.plan import Stage
from ltspec.pruning import EnforceMask
from ltspec.stages.context import Context, Outcome, dataset, loaders, model
from ltspec.stages.harness import LogEpochs
from ltspec.stages.weights import load_mask, start_weights
from ltspec.training import evaluate

KIND = "evaluate"


def run(stage: Stage, ctx: Context, log: LogEpochs) -> Outcome:
    trunk_key, mask_key = stage.parents
    trunk = ctx.stages[trunk_key]
    network = model(trunk.config, trunk.config["seed"])
    network.load_state_dict(start_weights(ctx, trunk_key, mask_key, "trained"))
    mask = load_mask(ctx, mask_key)
    EnforceMask(mask, network.to(ctx.device))
    _, evaluation = loaders(trunk.config, stage.runtime, ctx, dataset(trunk, ctx))
    result = evaluate(network, evaluation["test"].epoch(0), precision=stage.config["precision"])
    return Outcome({"test_accuracy": result.accuracy, "test_loss": result.loss, "sparsity": mask.sparsity()})
