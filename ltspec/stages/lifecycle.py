"""A stage's life: claim it, skip it if it is done, run it, store its result, log it.

A runner decides where and when a stage runs; this module, the same for every runner, does the rest. Every stage
runs under the store's claim on its key, so two processes never compute it twice; reads its parents' artifacts
from the store; writes its own atomically; and completes with a record (final metrics and per-epoch history)
written last. What a stage computes is its kind's (`ltspec.kinds`); its MLflow run is `StageRun`.
"""

from __future__ import annotations

from ltspec.kinds.base import LogEpochs, Outcome, Stage, StageFailed, canonical
from ltspec.stages.context import Context
from ltspec.stages.mlflow_run import INTERRUPTS, StageRun
from ltspec.stages.runtime import StageRuntime


def run_stage(stage: Stage, ctx: Context) -> tuple[dict, bool]:
    """Run one stage whose parents are complete, or find it done; returns (its record, whether it ran).

    A failure marks the stage's run FAILED and an interrupt (Ctrl-C, SIGTERM, SIGHUP) KILLED; the checkpoint stays
    for the next attempt.
    """
    with ctx.store.claim(stage.key) as first_claim:
        run = StageRun(stage, ctx, first_claim)
        if ctx.store.is_complete(stage.key):
            record = ctx.store.record(stage.key)
            run.log_reused(record)
            return record, False
        run.start()
        try:
            outcome = execute(stage, ctx, run.log_epochs)
        except BaseException as error:
            run.fail(error)
            if isinstance(error, (StageFailed, *INTERRUPTS)):
                raise
            raise StageFailed(stage, f"{type(error).__name__}: {error}") from error
        record = _complete(stage, ctx, outcome)
        run.finish(record)
        return record, True


def execute(stage: Stage, ctx: Context, log: LogEpochs | None = None) -> Outcome:
    """Compute one stage from its parents' artifacts, writing its own; completing it is `run_stage`'s job."""
    return stage.kind.run(stage, StageRuntime(ctx), log or (lambda rows: None))


def _complete(stage: Stage, ctx: Context, outcome: Outcome) -> dict:
    """Write the stage's record (its commit: every artifact is written before it) and drop its checkpoint."""
    record = {"key": stage.key, "kind": stage.kind.name, "config": canonical(stage.config),
              "parents": list(stage.parents),
              "metrics": outcome.metrics, "history": [[epoch, values] for epoch, values in outcome.history],
              "artifacts": outcome.artifacts}
    ctx.store.complete(stage.key, record)
    ctx.store.clear_checkpoint(stage.key)
    return record
