"""How a network is trained: `Recipe`, one record from the spec's `[train]` table through the plan to the loop.

The spec's optimizer and schedule tables are the settings the loop reads, never translated on the way: the
compiler puts them in the stage's `Recipe` (whose canonical form is what stage keys hash) and `ltspec.training`
builds the optimizer and the per-step schedule from it. Optimizers and schedules are registries: an entry is its
settings table (the spec's unions and the JSON schema are built from `OPTIMIZERS` and `SCHEDULES`) and how to build
it. Adding one is a settings model, a builder and one line. Nothing here imports torch until an optimizer is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, Union

from pydantic import Field
from pydantic import Strict as StrictType

from ltspec.strict import EpochIndex, Epochs, Fraction, Strict, pydantic_plugins_off

if TYPE_CHECKING:
    import torch

_T = TypeVar("_T")
# TOML has no tuples: a pair is an array of two, taken as a tuple, whose items stay strict.
Pair = Annotated[tuple[_T, _T], StrictType(False)]

with pydantic_plugins_off():
    class Sgd(Strict):
        kind: Literal["sgd"] = "sgd"
        momentum: float = Field(0.9, ge=0.0, lt=1.0)
        nesterov: bool = False
        weight_decay: float = Field(5e-4, ge=0.0)

    class Adam(Strict):  # Adam, or AdamW (decoupled weight decay)
        kind: Literal["adam", "adamw"]
        betas: Pair[Fraction] = (0.9, 0.999)
        weight_decay: float = Field(0.0, ge=0.0)

    class StepSchedule(Strict):
        kind: Literal["step"] = "step"
        milestones: list[Epochs] = Field(default=[], description="Epochs at which the lr is multiplied "
                                         "by `gamma` (the paper: 80 and 120 of 150).")
        gamma: float = Field(0.1, gt=0.0, le=1.0)
        warmup_epochs: EpochIndex = 0

    class CosineSchedule(Strict):
        kind: Literal["cosine"]
        warmup_epochs: EpochIndex = 0

    class ConstantSchedule(Strict):
        kind: Literal["constant"]
        warmup_epochs: EpochIndex = 0


@dataclass(frozen=True)
class Optimizer:
    """An optimizer: its settings table, and how to build it over parameters at an initial lr."""

    settings: type[Strict]
    build: Callable[[Iterable, float, Any], torch.optim.Optimizer]


def _sgd(params: Iterable, lr: float, s: Sgd) -> torch.optim.Optimizer:
    import torch

    return torch.optim.SGD(params, lr=lr, momentum=s.momentum, nesterov=s.nesterov, weight_decay=s.weight_decay)


def _adam(params: Iterable, lr: float, s: Adam) -> torch.optim.Optimizer:
    import torch

    build = torch.optim.AdamW if s.kind == "adamw" else torch.optim.Adam
    return build(params, lr=lr, betas=s.betas, weight_decay=s.weight_decay)


OPTIMIZERS = {
    "sgd": Optimizer(Sgd, _sgd),
    "adam": Optimizer(Adam, _adam),
    "adamw": Optimizer(Adam, _adam),
}


@dataclass(frozen=True)
class Schedule:
    """An lr schedule: its settings table, and its decay factor at a step (after warmup, `progress` runs from 0 at
    the first step to 1 at the last)."""

    settings: type[Strict]
    decay: Callable[[Any, int, int, float], float]


def _step_decay(settings: StepSchedule, step: int, steps_per_epoch: int, progress: float) -> float:
    return settings.gamma ** sum(step // steps_per_epoch >= milestone for milestone in settings.milestones)


def _cosine_decay(settings: CosineSchedule, step: int, steps_per_epoch: int, progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _no_decay(settings: ConstantSchedule, step: int, steps_per_epoch: int, progress: float) -> float:
    return 1.0


SCHEDULES = {
    "step": Schedule(StepSchedule, _step_decay),
    "cosine": Schedule(CosineSchedule, _cosine_decay),
    "constant": Schedule(ConstantSchedule, _no_decay),
}


def settings_union(registry: dict) -> object:
    """The spec's table for a registry: a union of its settings models, told apart by `kind`."""
    members = tuple(dict.fromkeys(entry.settings for entry in registry.values()))
    return Annotated[Union[members], Field(discriminator="kind")]  # noqa: UP007 (a runtime-built union)


def entry(registry: dict, kind: str, what: str):
    """The registry's entry for `kind`; a kind no table can name (a hand-built setting) is a ValueError."""
    if kind not in registry:
        raise ValueError(f"unknown {what} kind {kind!r}: expected one of {', '.join(map(repr, registry))}")
    return registry[kind]


@dataclass(frozen=True)
class Recipe:
    """How to train: epochs, the initial lr, the optimizer and schedule settings, and the precision."""

    epochs: int
    lr: float
    optimizer: Sgd | Adam
    schedule: StepSchedule | CosineSchedule | ConstantSchedule
    precision: Literal["fp32", "bf16"] = "fp32"
