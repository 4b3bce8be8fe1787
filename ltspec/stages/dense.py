"""The dense stage: a trunk's θ0, θ0', the rewind points θk its children need, and θT after T epochs."""

from __future__ import annotations

from ltspec.nets import state_on_cpu
from ltspec.plan import Stage
from ltspec.stages import harness
from ltspec.stages.context import Context, Outcome, model, reinit_seed
from ltspec.stages.harness import LogEpochs
from ltspec.hooks import Hook

KIND = "dense"


class RewindPoints(Hook):
    """Store θk after epoch k for every k a child rewinds to (once: a resumed run finds them stored)."""

    name = "rewind_points"

    def __init__(self, stage: Stage, ctx: Context, network):
        self.stage, self.ctx, self.network = stage, ctx, network
        self.saves = set(stage.runtime["saves"])

    def end_epoch(self, epoch: int, values: dict[str, float]) -> None:
        name = f"rewind@{epoch}"
        if epoch in self.saves and not self.ctx.store.has(self.stage.key, name):
            self.ctx.store.write_tensors(self.stage.key, name, state_on_cpu(self.network))


def run(stage: Stage, ctx: Context, log: LogEpochs) -> Outcome:
    seed = stage.config["seed"]
    network = model(stage.config, seed)
    ctx.store.write_tensors(stage.key, "init", state_on_cpu(network))
    ctx.store.write_tensors(stage.key, "reinit", state_on_cpu(model(stage.config, reinit_seed(seed))))
    history, result = harness.train(stage, ctx, network, stage.config["train"], log,
                                    hooks=[RewindPoints(stage, ctx, network)])
    ctx.store.write_tensors(stage.key, "trained", state_on_cpu(network))
    return Outcome(harness.final_metrics(history, result), history)
