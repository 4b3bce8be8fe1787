"""Which ready stage takes a free slot: one rule for the local runner and for the simulated clock of
benchmarks/schedule.py, which measures it against a lower bound of the makespan on the paper's plan.

Order matters once there are many slots. In plan order (first in, first out) the long chains of a plan, IMP's
rounds of 150 epochs each, start when their turn comes and end alone, long after the rest, while most slots sit
idle. So a stage's rank is its critical path: the work on the longest path from its start to the end of the plan,
itself included, and a free slot takes the ready stage of highest rank that fits (ties in plan order).

A stage takes one slot, or several slots of one GPU (a large net's whole GPU beside small nets' quarters,
`ltspec.runners.slots.units`). It goes to the device with the most free slots, so that stages spread over the GPUs
and share each as little as the work allows. When the best-ranked ready stage fits nowhere (a whole-GPU stage while
every GPU runs small ones), the device with the most room is held for it: stages of lower rank start on the other
devices only, and it starts as soon as its device drains, rather than wait for the small stages to run out.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ltspec.plan import Stage

NON_TRAINING_EPOCHS = 0.1  # what a stage that trains nothing (a mask, an evaluation, R_p) costs, in epochs

Need = Callable[[Stage, str], int]  # the slots a stage takes on a device


def epochs_cost(stage: Stage) -> float:
    """The local runner's measure of a stage's work: its epochs (those of every architecture counted alike)."""
    return stage.epochs + NON_TRAINING_EPOCHS


def critical_path(stages: Sequence[Stage], cost: Callable[[Stage], float]) -> dict[str, float]:
    """Each stage's critical path: its cost plus the longest critical path among its children. `stages` in
    dependency order (parents first); parents outside them (done already) are ignored."""
    children: dict[str, list[str]] = {}
    for stage in stages:
        for parent in stage.parents:
            children.setdefault(parent, []).append(stage.key)
    path: dict[str, float] = {}
    for stage in reversed(stages):
        path[stage.key] = cost(stage) + max((path[child] for child in children.get(stage.key, ())), default=0.0)
    return path


def critical_path_first(stages: Sequence[Stage], cost: Callable[[Stage], float]) -> dict[str, Any]:
    """The rank of each stage (smaller first): longest critical path first, then plan order."""
    path = critical_path(stages, cost)
    return {stage.key: (-path[stage.key], index) for index, stage in enumerate(stages)}


def plan_order(stages: Sequence[Stage]) -> dict[str, Any]:
    """The rank of first in, first out: plan order (the baseline of benchmarks/schedule.py)."""
    return {stage.key: index for index, stage in enumerate(stages)}


def choose(ready: Iterable[Stage], need: Need, free: Mapping[str, int]) -> tuple[int, str] | None:
    """The stage that takes a slot now, as its position in `ready` (the stages whose parents are all done, best
    rank first), and its device; None when none fits. `free`: the free slots of each device, in device order.

    The stage is the best-ranked one that fits on a device, on the device with the most slots left (the first of
    those), so that stages spread over the GPUs. When the best-ranked stage fits nowhere, the device where it has
    the most room is held for it, and a stage of lower rank may take a slot only elsewhere."""
    held = None
    for position, stage in enumerate(ready):
        if not any(count > 0 for device, count in free.items() if device != held):
            return None
        room = [(free[device] - need(stage, device), -index, device) for index, device in enumerate(free)
                if device != held]
        fits = [option for option in room if option[0] >= 0]
        if fits:
            return position, max(fits)[2]
        if held is None:
            held = max(room)[2]
    return None


class Frontier:
    """The stages of a run that have not started: the ready ones (every parent settled) in rank order, and the rest
    counting their parents still to settle. Parents outside `stages` are done already."""

    def __init__(self, stages: Sequence[Stage], rank: Mapping[str, Any]):
        self.rank, self.stages = rank, {stage.key: stage for stage in stages}
        self.waiting = {stage.key: sum(parent in self.stages for parent in stage.parents) for stage in stages}
        self.children: dict[str, list[str]] = {}
        for stage in stages:
            for parent in stage.parents:
                self.children.setdefault(parent, []).append(stage.key)
        self.ready: list[tuple[Any, str]] = sorted((rank[key], key) for key, count in self.waiting.items()
                                                   if count == 0)
        self.unstarted = len(stages)

    def take(self, need: Need, free: Mapping[str, int]) -> tuple[Stage, str] | None:
        """The ready stage `choose` picks, with its device, taken off the frontier; None when none fits."""
        chosen = choose((self.stages[key] for _, key in self.ready), need, free)
        if chosen is None:
            return None
        position, device = chosen
        _, key = self.ready.pop(position)
        self.unstarted -= 1
        return self.stages[key], device

    def settle(self, key: str) -> None:
        """A stage ended (whatever its outcome): its children with no other parent left become ready."""
        for child in self.children.get(key, ()):
            self.waiting[child] -= 1
            if self.waiting[child] == 0:
                bisect.insort(self.ready, (self.rank[child], child))


@dataclass(frozen=True)
class Simulated:
    """A schedule on a simulated clock: when it ends, and when and where each stage started."""

    makespan: float
    starts: dict[str, tuple[float, str]]


def simulate(stages: Sequence[Stage], rank: Mapping[str, Any], duration: Callable[[Stage], float], need: Need,
             devices: Mapping[str, int]) -> Simulated:
    """Run the plan on a clock: `devices` maps each device to its slots, a stage holds `need` slots of its device
    for `duration`, and free slots are filled by `Frontier.take`, as the local runner fills them."""
    frontier, free = Frontier(stages, rank), dict(devices)
    running: list[tuple[float, str, str, int]] = []  # (end, key, device, slots held)
    starts: dict[str, tuple[float, str]] = {}
    now = 0.0
    while frontier.unstarted or running:
        while (taken := frontier.take(need, free)) is not None:
            stage, device = taken
            held = need(stage, device)
            free[device] -= held
            starts[stage.key] = (now, device)
            heapq.heappush(running, (now + duration(stage), stage.key, device, held))
        if not running:
            raise ValueError("a stage needs more slots than any device has")
        now, key, device, held = heapq.heappop(running)
        free[device] += held
        frontier.settle(key)
    return Simulated(now, starts)
