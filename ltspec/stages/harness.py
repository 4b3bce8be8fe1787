"""The training harness of a stage: `ltspec.training.fit` with the stage's data, recipe, checkpoints and logging.

What a stage adds to plain training comes as hooks (`ltspec.training.Hook`); this module adds the ones every
training stage has: its epochs logged to MLflow in batches (`EpochLog`) and shown in the progress bar
(`Progress`). Checkpoints go to the store under the stage's key (`StoreCheckpoints`), so a killed run resumes
from its last one with the same batches and the same result: data order and augmentation are seeded per epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from ltspec.checkpoints import Policy
from ltspec.kinds.base import DataConfig, LogEpochs, Stage, StageFailed
from ltspec.recipe import Recipe
from ltspec.stages.context import Context, channels_last, loaders
from ltspec.training import Diverged, EpochResult, Hook, compile_model, fit


class StoreCheckpoints:
    """A stage's checkpoints in the store, by `ltspec.checkpoints.Policy`: a host snapshot every `checkpoint_every`
    epochs, written in the background at most once per `checkpoint_seconds`, never at the last epoch (the stage's
    result is stored right after it). Used as a context manager around `fit`: leaving it waits for the write in
    flight, and leaving it by an exception (an interrupt, a failure) first writes the last finished epoch."""

    def __init__(self, stage: Stage, ctx: Context, before_write: Callable[[], None] = lambda: None):
        self.stage, self.ctx = stage, ctx
        self.policy = Policy(lambda state: ctx.store.save_checkpoint(stage.key, state),
                             every=stage.runtime["checkpoint_every"],
                             seconds=stage.runtime["checkpoint_seconds"],
                             before_write=before_write)

    def load(self) -> dict | None:
        state = self.ctx.store.load_checkpoint(self.stage.key)
        return state if state is not None and "hooks" in state else None

    def save(self, epoch: int, state: Callable[[], dict], *, final: bool) -> None:
        if not final:
            self.policy.epoch_done(epoch, state)

    def __enter__(self) -> StoreCheckpoints:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.policy.stop(keep_latest=kind is not None)


RESUMED_FROM = "resumed_from_epoch"  # a metric: the epoch of the checkpoint an attempt trained on from


class EpochLog(Hook):
    """Epoch metrics to MLflow, in batches: pending rows go out just before a checkpoint is written (`flush`, at
    most once per `storage.checkpoint_seconds`); the rest go with the stage's final metrics, in the one batch that
    closes its run (`StageRun.finish`). The count logged is checkpointed with them, so a resumed stage logs each
    epoch exactly once. An attempt that resumes from a checkpoint says so first: `resumed_from_epoch` = k at
    step k, so that the run shows where each preemption's attempt took over (and a test can tell a resumed stage
    from one that started over, whose rows would be the same)."""

    name = "epoch_log"

    def __init__(self, log: LogEpochs):
        self.log = log
        self.rows: list = []
        self.logged = 0

    def begin(self, epoch: int) -> None:
        if epoch:
            self.log([(epoch, {RESUMED_FROM: float(epoch)})])

    def end_epoch(self, epoch: int, values: dict[str, float]) -> None:
        self.rows.append((epoch, values))

    def state_dict(self) -> dict:
        return {"rows": [[e, v] for e, v in self.rows], "logged": self.logged}

    def load_state_dict(self, state: dict) -> None:
        self.rows, self.logged = [(e, v) for e, v in state["rows"]], state["logged"]

    def flush(self) -> None:
        self.log(self.rows[self.logged:])
        self.logged = len(self.rows)


class Progress(Hook):
    """Each finished epoch to the runner's progress display."""

    name = "progress"

    def __init__(self, stage: Stage, ctx: Context):
        self.stage, self.ctx = stage, ctx

    def end_epoch(self, epoch: int, values: dict[str, float]) -> None:
        if self.ctx.on_epoch is not None:
            self.ctx.on_epoch(self.stage, epoch, values)


def train(stage: Stage, ctx: Context, model: nn.Module, recipe: Recipe, data: DataConfig, seed: int,
          log: LogEpochs, hooks: Sequence[Hook] = (), epochs: int | None = None) -> tuple[list, EpochResult | None]:
    """Train `model` (on the context's device) with `recipe` on `data` (batch order seeded by `seed`), resuming
    from the stage's checkpoint; a diverged loss fails the stage, naming the epoch."""
    train_loader, evaluation = loaders(data, seed, stage.runtime, ctx)
    model.to(ctx.device)
    epoch_log = EpochLog(log)
    every_hook = [*hooks, epoch_log, Progress(stage, ctx)]
    try:
        with StoreCheckpoints(stage, ctx, before_write=epoch_log.flush) as checkpoints:
            return fit(model, train_loader.epoch, {name: loader.epoch for name, loader in evaluation.items()},
                       recipe, steps_per_epoch=len(train_loader), hooks=every_hook, checkpoints=checkpoints,
                       epochs=epochs, eval_every=stage.runtime["eval_every"],
                       channels_last=channels_last(data, stage.runtime),
                       compiled=compile_model(model) if stage.runtime["compile"] else None)
    except Diverged as error:
        raise StageFailed(stage, str(error)) from None
