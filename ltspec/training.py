"""Training: optimizers, per-step LR schedules, one epoch of training, evaluation, and the loop over epochs.

Every stage of an experiment (dense pretraining, IMP rounds, arms, ADMM, gradual pruning) trains through `fit`.
What differs between them enters through one hook protocol, `Hook`: a `penalty` added to the loss (ADMM's
ρ/2·‖W − Z + U‖²), `after_step` run after each optimizer step (mask enforcement, so that pruned weights are exactly
zero after every step whatever the optimizer, momentum or weight decay), `end_epoch` (saving rewind points, logging),
and `state_dict`/`load_state_dict`, through which a checkpoint keeps and restores each hook's state, so a resumed
run continues exactly. The loop knows nothing of specs, masks or datasets: batches are any iterable of (x, y).

Metrics stay on the device and are read back once per epoch: a `.item()` per step would stall the GPU queue on
every step. For the same reason a NaN or infinite loss is not checked per step; it propagates into the epoch's
mean loss, and the caller decides what to do with it.
"""

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from ltspec.hooks import Hook
from ltspec.recipe import (OPTIMIZERS, SCHEDULES, Adam, ConstantSchedule, CosineSchedule, Recipe, Sgd, StepSchedule,
                           entry)


@dataclass(frozen=True)
class EpochResult:
    """Mean loss and accuracy over the epoch's examples.

    `loss` is the mean cross entropy, without the penalty, so that penalised and plain stages compare; it is NaN
    or infinite if any step's loss was. `lr` is the learning rate the epoch started with; None for evaluation.
    """

    loss: float
    accuracy: float
    lr: float | None
    examples: int


def make_optimizer(params: Iterable[Tensor], lr: float, settings: Sgd | Adam) -> torch.optim.Optimizer:
    """The optimizer of `settings` (a table of `ltspec.recipe.OPTIMIZERS`) over `params` at the initial `lr`."""
    return entry(OPTIMIZERS, settings.kind, "optimizer").build(params, lr, settings)


def make_scheduler(optimizer: torch.optim.Optimizer, settings: StepSchedule | CosineSchedule | ConstantSchedule, *,
                   epochs: int, steps_per_epoch: int) -> LRScheduler:
    """A scheduler to step once per optimizer step, so that warmup ramps smoothly rather than in epoch stairs.

    Step i (counting from 0) trains at lr · warmup(i) · decay(i). The warmup ramps linearly over the first
    `warmup_epochs` epochs, reaching the full lr at the last warmup step; the step decay multiplies by gamma
    from the first step of each milestone epoch on; the cosine decay runs from the full lr after warmup to zero
    after the last step of the last epoch.

    To resume, make the optimizer and the scheduler as at the start, then load both state dicts: the schedule
    itself is rebuilt from `settings`, only the step count is state.
    """
    decay = entry(SCHEDULES, settings.kind, "schedule").decay
    warmup_steps = settings.warmup_epochs * steps_per_epoch
    decay_steps = max(1, epochs * steps_per_epoch - warmup_steps)

    def factor(step: int) -> float:
        warmup = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
        progress = min(1.0, max(0, step - warmup_steps) / decay_steps)
        return warmup * decay(settings, step, steps_per_epoch, progress)

    return LambdaLR(optimizer, factor)


def train_epoch(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    *,
    penalty: Callable[[], Tensor] | None = None,
    after_step: Sequence[Callable[[], None]] = (),
    precision: str = "fp32",
    channels_last: bool = False,
) -> EpochResult:
    """Train `model` for one pass over `batches`, minimising cross entropy plus `penalty()` when given.

    Each step runs: forward (under autocast for bf16), backward, optimizer step, then every `after_step`
    action, then the scheduler step, so that an action sees the weights the optimizer just wrote. The penalty
    is computed outside autocast, in the parameters' own precision.
    """
    device = _prepare(model, channels_last)
    model.train()
    lr = optimizer.param_groups[0]["lr"]
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    examples = 0
    for x, y in batches:
        x, y = _inputs(x, device, channels_last), y.to(device, non_blocking=True)
        with _autocast(device, precision):
            logits = model(x)
            loss = F.cross_entropy(logits, y)
        objective = loss if penalty is None else loss + penalty()
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()
        for action in after_step:
            action()
        scheduler.step()
        loss_sum.add_(loss.detach(), alpha=y.shape[0])
        correct += (logits.argmax(dim=1) == y).sum()
        examples += y.shape[0]
    return _result(loss_sum, correct, examples, lr)


def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    precision: str = "fp32",
    channels_last: bool = False,
) -> EpochResult:
    """Mean cross entropy and accuracy in eval mode, without gradients; leaves the model's mode as it found it."""
    device = _prepare(model, channels_last)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    examples = 0
    with torch.no_grad():
        for x, y in batches:
            x, y = _inputs(x, device, channels_last), y.to(device, non_blocking=True)
            with _autocast(device, precision):
                logits = model(x)
                loss = F.cross_entropy(logits, y, reduction="sum")
            loss_sum += loss
            correct += (logits.argmax(dim=1) == y).sum()
            examples += y.shape[0]
    model.train(was_training)
    return _result(loss_sum, correct, examples, None)


def compile_model(model: nn.Module) -> nn.Module:
    """`torch.compile` the model, with one static graph per batch shape.

    An epoch sees at most a few shapes (full batches, the last partial one, the evaluation batch), so static
    graphs beat the dynamic-shape graph torch.compile would switch to at the second shape. The compiled module
    shares its parameters with `model`, but its state_dict keys carry an `_orig_mod.` prefix: checkpoint
    `model`, not the compiled wrapper.
    """
    return torch.compile(model, dynamic=False)


def _overrides(hook: Hook, method: str) -> bool:
    return getattr(type(hook), method) is not getattr(Hook, method)


class Checkpoints(Protocol):
    """Where `fit` keeps its resume state: `load` gives the last one or None; `save` decides by its own policy
    whether to write this one (`final` at the last epoch, so that a policy can skip it: the result is stored)."""

    def load(self) -> dict | None: ...

    def save(self, epoch: int, state: Callable[[], dict], *, final: bool) -> None: ...


class Diverged(ArithmeticError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, loss: float):
        self.epoch, self.loss = epoch, loss
        super().__init__(f"the training loss became {loss} in epoch {epoch}; lower the lr")


def fit(model: nn.Module, train: Callable[[int], Iterator[tuple[Tensor, Tensor]]],
        evaluation: dict[str, Callable[[int], Iterator[tuple[Tensor, Tensor]]]], recipe: Recipe, *,
        steps_per_epoch: int, hooks: Sequence[Hook] = (), checkpoints: Checkpoints | None = None,
        epochs: int | None = None, eval_every: int = 1, channels_last: bool = False,
        compiled: nn.Module | None = None) -> tuple[list[tuple[int, dict[str, float]]], EpochResult | None]:
    """Train `model` for `epochs` epochs (default: the recipe's, which also sets the schedule's length), resuming
    from the last checkpoint; returns the per-epoch history and the last test evaluation.

    `train(e)` and each `evaluation[name](e)` give epoch e's batches (the same ones whenever asked: a resumed run
    replays them); metrics of an evaluation are logged as `<name>_loss` and `<name>_accuracy`. `compiled` is a
    `torch.compile` of `model` to run instead of it (checkpoints keep `model`'s own state_dict).
    """
    runner = compiled or model
    optimizer = make_optimizer(model.parameters(), recipe.lr, recipe.optimizer)
    scheduler = make_scheduler(optimizer, recipe.schedule, epochs=recipe.epochs, steps_per_epoch=steps_per_epoch)
    penalties = [hook.penalty for hook in hooks if _overrides(hook, "penalty")]
    after_step = [hook.after_step for hook in hooks if _overrides(hook, "after_step")]
    penalty = (lambda: sum(term() for term in penalties)) if penalties else None
    total = epochs or recipe.epochs

    history, start = [], 0
    resumed = checkpoints.load() if checkpoints is not None else None
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        for hook in hooks:
            hook.load_state_dict(resumed["hooks"][hook.name])
        history, start = [(e, v) for e, v in resumed["history"]], resumed["epoch"]
    for hook in hooks:
        hook.begin(start)

    result = None
    for epoch in range(start, total):
        fitted = train_epoch(runner, train(epoch), optimizer, scheduler, penalty=penalty, after_step=after_step,
                             precision=recipe.precision, channels_last=channels_last)
        if not math.isfinite(fitted.loss):
            raise Diverged(epoch + 1, fitted.loss)
        values = {"train_loss": fitted.loss, "train_accuracy": fitted.accuracy, "lr": fitted.lr}
        if (epoch + 1) % eval_every == 0 or epoch + 1 == total:
            for name, batches in evaluation.items():
                scored = evaluate(runner, batches(0), precision=recipe.precision, channels_last=channels_last)
                values.update({f"{name}_loss": scored.loss, f"{name}_accuracy": scored.accuracy})
                result = scored if name == "test" else result
        history.append((epoch + 1, values))
        for hook in hooks:
            hook.end_epoch(epoch + 1, values)
        if checkpoints is not None:
            checkpoints.save(epoch + 1, lambda: {
                "epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "history": [[e, v] for e, v in history],
                "hooks": {hook.name: hook.state_dict() for hook in hooks}}, final=epoch + 1 == total)
    return history, result


def _prepare(model: nn.Module, channels_last: bool) -> torch.device:
    """Convert the model to channels_last if asked (a no-op once converted) and return its device.

    The conversion keeps the Parameter objects, so an optimizer built before it still updates them.
    """
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return next(model.parameters()).device


def _inputs(x: Tensor, device: torch.device, channels_last: bool) -> Tensor:
    if channels_last and x.dim() == 4:
        return x.to(device, non_blocking=True, memory_format=torch.channels_last)
    return x.to(device, non_blocking=True)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise ValueError(f"unknown precision {precision!r}: expected 'fp32' or 'bf16'")


def _result(loss_sum: Tensor, correct: Tensor, examples: int, lr: float | None) -> EpochResult:
    """Read the device-side sums back in one host sync."""
    if examples == 0:
        raise ValueError("no batches: an epoch needs at least one (x, y) batch")
    total_loss, total_correct = torch.stack([loss_sum, correct.to(loss_sum.dtype)]).tolist()
    return EpochResult(loss=total_loss / examples, accuracy=total_correct / examples, lr=lr, examples=examples)
