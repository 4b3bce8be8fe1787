"""Several compiled plans as one: the stages of every spec, each shared stage once.

Stage keys are content hashes, so two specs that need the same dense run (same data, model, recipe and seed), the
same mask or the same arm get the same key; merging by key is all it takes to train that work once. A stage that
several specs share keeps the labels they agree on and marks the others `*`, and saves the union of the rewind
points they need, exactly as two roles of one stage are merged inside one spec.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ltspec.plan.compile import Plan, _Builder


@dataclass(frozen=True)
class Combined:
    """The merged plan, and the specs' own plans (whose epochs, summed, are what running them apart would cost)."""

    plan: Plan
    parts: tuple[Plan, ...]

    @property
    def separate_epochs(self) -> int:
        """Epochs if each spec ran on its own store: sharing inside a spec, none across specs."""
        return sum(part.epochs for part in self.parts)

    @property
    def naive_epochs(self) -> int:
        """Epochs if every result of every spec were trained from scratch."""
        return sum(part.naive_epochs for part in self.parts)


def combine(plans: Sequence[Plan], name: str) -> Combined:
    """One plan with every stage of `plans` once, in an order where parents come first.

    The plans are not changed: their stages are copied before labels and runtime are merged into them.
    """
    builder = _Builder()
    for plan in plans:
        for stage in plan.stages:
            builder.add(replace(stage, labels=dict(stage.labels), runtime=dict(stage.runtime)))
        for key in plan.deliverables:
            builder.deliver(key)
    arms = tuple(dict.fromkeys(arm for plan in plans for arm in plan.arms))
    digest = hashlib.sha256(" ".join(plan.spec_hash for plan in plans).encode()).hexdigest()[:len(plans[0].spec_hash)]
    merged = Plan(name, digest, tuple(builder.stages.values()), arms, tuple(builder.deliverables))
    return Combined(merged, tuple(plans))
