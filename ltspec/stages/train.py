"""The train stage: an arm (or an IMP round's retraining) — start weights ⊙ mask, trained with the mask enforced
after every step."""

from __future__ import annotations

from ltspec.nets import state_on_cpu
from ltspec.plan import Stage
from ltspec.pruning import EnforceMask
from ltspec.stages import harness
from ltspec.stages.context import Context, Outcome, model
from ltspec.stages.harness import LogEpochs
from ltspec.stages.weights import FINAL, load_mask, start_weights

KIND = "train"


def run(stage: Stage, ctx: Context, log: LogEpochs) -> Outcome:
    trunk, mask_key = stage.parents
    network = model(stage.config, stage.config["seed"])
    network.load_state_dict(start_weights(ctx, trunk, mask_key, stage.config["start"]))
    mask = load_mask(ctx, mask_key)
    network.to(ctx.device)
    history, result = harness.train(stage, ctx, network, stage.config["train"], log,
                                    hooks=[EnforceMask(mask, network)])
    ctx.store.write_tensors(stage.key, FINAL, state_on_cpu(network))
    return Outcome({**harness.final_metrics(history, result), "sparsity": mask.sparsity()}, history)
