"""A part of a plan: the stages a user picks by what they are (`--only generator=imp --only seed=0`), and what
they need.

A choice is `name=value`: `generator`, `arm`, `seed`, `sparsity`, `round`, `kind`, or a swept setting by its
dotted key or its last part (`train.lr=0.01`, `lr=0.01`). A stage is selected when every named label matches one of
the values given for it (several values for one name are alternatives); a stage without the label, a dense run
asked for an arm, is not. The selected stages keep their ancestors, so the part runs on its own: `arm=lottery`
trains the dense trunks and the masks, then the lottery arms, and nothing else.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import replace
from typing import Any

from ltspec.plan.compile import Plan
from ltspec.kinds.base import Stage

NAMES = ("generator", "arm", "seed", "sparsity", "round", "kind")
SPARSITY_TOLERANCE = 5e-4  # 0.875 names the 87.5% mask whatever the rounding of (1 - rate)^rounds

Choices = dict[str, tuple[Any, ...]]


class SelectionError(ValueError):
    """A choice that names nothing the plan has; the message lists what it does have."""


def parse_choices(texts: list[str]) -> Choices:
    """`["arm=lottery", "arm=reinit", "lr=0.01"]` as {"arm": ("lottery", "reinit"), "lr": (0.01,)}; a value is
    read as TOML (`0.01`, `3`) or else as a plain word."""
    choices: dict[str, tuple[Any, ...]] = {}
    for text in texts:
        name, equals, value = text.partition("=")
        if not equals or not name.strip() or not value.strip():
            raise SelectionError(f"`{text}`: a choice is name=value, e.g. generator=imp, arm=lottery, seed=0 or "
                                 "lr=0.01")
        try:
            parsed = tomllib.loads(f"value = {value.strip()}")["value"]
        except tomllib.TOMLDecodeError:
            parsed = value.strip()
        choices[name.strip()] = choices.get(name.strip(), ()) + (parsed,)
    return choices


def label_of(stage: Stage, name: str) -> tuple[bool, Any]:
    """(whether the stage has it, its value) for a choice's name: a label, the kind, or a sweep key."""
    if name == "kind":
        return True, stage.kind.name
    if name in NAMES:
        value = stage.labels.get(name)
        return value is not None, value
    for label, value in stage.labels.items():
        if label.startswith("sweep.") and (label == f"sweep.{name}" or label.rsplit(".", 1)[-1] == name):
            return True, value
    return False, None


def _same(name: str, value: Any, wanted: Any) -> bool:
    if isinstance(value, bool) or isinstance(wanted, bool):
        return value == wanted
    if isinstance(value, (int, float)) and isinstance(wanted, (int, float)):
        tolerance = SPARSITY_TOLERANCE if name == "sparsity" else 1e-12
        return math.isclose(value, wanted, rel_tol=tolerance, abs_tol=tolerance)
    return str(value) == str(wanted)


def matches(stage: Stage, choices: Choices) -> bool:
    for name, wanted in choices.items():
        has, value = label_of(stage, name)
        if not has or not any(_same(name, value, one) for one in wanted):
            return False
    return True


def check(plan: Plan, choices: Choices) -> None:
    """Refuse a name no stage carries, or a value no stage has, listing what the plan has instead."""
    for name, wanted in choices.items():
        present = {repr(value): value for stage in plan.stages for has, value in [label_of(stage, name)] if has}
        if not present:
            sweep = sorted({label.removeprefix("sweep.") for stage in plan.stages for label in stage.labels
                            if label.startswith("sweep.")})
            raise SelectionError(f"`{name}`: no stage has it; choose by {', '.join(NAMES + tuple(sweep))}")
        for one in wanted:
            if not any(_same(name, value, one) for value in present.values()):
                have = ", ".join(sorted(str(value) for value in present.values()))
                raise SelectionError(f"`{name}={one}`: the plan has no such stage; {name} is one of {have}")


def select(plan: Plan, choices: Choices) -> Plan:
    """The stages matching every choice and their ancestors, in the plan's order; the whole plan without choices."""
    if not choices:
        return plan
    check(plan, choices)
    chosen = {stage.key for stage in plan.stages if matches(stage, choices)}
    keep = chosen.union(*(plan.ancestors(key) for key in chosen))
    return replace(plan, stages=tuple(stage for stage in plan.stages if stage.key in keep),
                   arms=tuple(arm for arm in plan.arms if arm.stage in keep),
                   deliverables=tuple(key for key in plan.deliverables if key in keep))
