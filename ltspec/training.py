"""The training loop: optimizers, per-step LR schedules, one epoch of training, and evaluation.

Every stage of an experiment (dense pretraining, IMP rounds, arms, ADMM) trains through `train_epoch`. What
differs between them enters as plain hooks: a `penalty` added to the loss (ADMM's ρ/2·‖W − Z + U‖²) and
`after_step` actions run after each optimizer step (mask enforcement, so that pruned weights are exactly zero
after every step whatever the optimizer, momentum or weight decay). The loop knows nothing of specs, masks or
datasets: batches are any iterable of (x, y) tensor pairs.

Metrics stay on the device and are read back once per epoch: a `.item()` per step would stall the GPU queue on
every step. For the same reason a NaN or infinite loss is not checked per step; it propagates into the epoch's
mean loss, and the caller decides what to do with it.
"""

import contextlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

@dataclass(frozen=True)
class OptimizerSettings:
    """`momentum` and `nesterov` apply to SGD only, `betas` to Adam and AdamW only."""

    kind: Literal["sgd", "adam", "adamw"]
    lr: float
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self):
        if self.kind not in ("sgd", "adam", "adamw"):
            raise ValueError(f"unknown optimizer kind {self.kind!r}: expected 'sgd', 'adam' or 'adamw'")


@dataclass(frozen=True)
class ScheduleSettings:
    """Milestones and warmup are counted in epochs, like the paper (LR × 0.1 at epochs 80 and 120)."""

    kind: Literal["step", "cosine", "constant"]
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: int = 0

    def __post_init__(self):
        if self.kind not in ("step", "cosine", "constant"):
            raise ValueError(f"unknown schedule kind {self.kind!r}: expected 'step', 'cosine' or 'constant'")
        if self.milestones and self.kind != "step":
            raise ValueError(f"milestones apply to the step schedule only, not {self.kind!r}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")


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


def make_optimizer(params: Iterable[Tensor], settings: OptimizerSettings) -> torch.optim.Optimizer:
    if settings.kind == "sgd":
        return torch.optim.SGD(
            params,
            lr=settings.lr,
            momentum=settings.momentum,
            nesterov=settings.nesterov,
            weight_decay=settings.weight_decay,
        )
    optimizer = torch.optim.Adam if settings.kind == "adam" else torch.optim.AdamW
    return optimizer(params, lr=settings.lr, betas=settings.betas, weight_decay=settings.weight_decay)


def make_scheduler(
    optimizer: torch.optim.Optimizer, settings: ScheduleSettings, *, epochs: int, steps_per_epoch: int
) -> LRScheduler:
    """A scheduler to step once per optimizer step, so that warmup ramps smoothly rather than in epoch stairs.

    Step i (counting from 0) trains at lr · warmup(i) · decay(i). The warmup ramps linearly over the first
    `warmup_epochs` epochs, reaching the full lr at the last warmup step; the step decay multiplies by gamma
    from the first step of each milestone epoch on; the cosine decay runs from the full lr after warmup to zero
    after the last step of the last epoch.

    To resume, make the optimizer and the scheduler as at the start, then load both state dicts: the schedule
    itself is rebuilt from `settings`, only the step count is state.
    """
    warmup_steps = settings.warmup_epochs * steps_per_epoch
    decay_steps = max(1, epochs * steps_per_epoch - warmup_steps)

    def factor(step: int) -> float:
        warmup = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
        if settings.kind == "step":
            epoch = step // steps_per_epoch
            return warmup * settings.gamma ** sum(epoch >= milestone for milestone in settings.milestones)
        if settings.kind == "cosine":
            progress = min(1.0, max(0, step - warmup_steps) / decay_steps)
            return warmup * 0.5 * (1.0 + math.cos(math.pi * progress))
        return warmup

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
