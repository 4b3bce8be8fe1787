"""A plan measured against its store: what is done, what is half trained, and what the store holds that no plan
needs.

A stage is done when its record exists, and half trained when its epoch checkpoint does: reading the epoch out of
a checkpoint needs torch, which is imported only when some stage has one, so `ltspec plan` on a fresh or finished
store stays torch-free.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ltspec.plan.compile import Plan
from ltspec.store import CHECKPOINT, Store


@dataclass(frozen=True)
class Status:
    """Which of a plan's stages the store has finished, and the epoch each half-trained one has reached."""

    plan: Plan
    done: frozenset[str]
    partial: dict[str, int]  # stage key -> epochs its checkpoint holds

    @property
    def to_run(self) -> list[str]:
        return [stage.key for stage in self.plan.stages if stage.key not in self.done]

    @property
    def epochs_left(self) -> int:
        return sum(stage.epochs - self.partial.get(stage.key, 0) for stage in self.plan.stages
                   if stage.key not in self.done)

    def header(self) -> str:
        """`120 done, 13 to run, 1 resuming (train lottery on imp r3 (87.5%) at epoch 6/12)`."""
        resuming = [f"{self.plan.stage(key).describe()} at epoch {epoch}/{self.plan.stage(key).epochs}"
                    for key, epoch in self.partial.items()]
        text = f"{len(self.done)} done, {len(self.to_run)} to run, {len(resuming)} resuming"
        return f"{text} ({'; '.join(resuming)})" if resuming else text


def status(plan: Plan, store: Store) -> Status:
    done = frozenset(stage.key for stage in plan.stages if store.is_complete(stage.key))
    partial = {}
    for stage in plan.stages:
        if stage.key not in done and (store.stage_dir(stage.key) / CHECKPOINT).exists():
            state = store.load_checkpoint(stage.key)
            if state is not None and "epoch" in state:
                partial[stage.key] = int(state["epoch"])
    return Status(plan, done, partial)


def unreferenced(store: Store, plans: list[Plan]) -> list[Path]:
    """The stage folders of the store that none of `plans` has a stage for."""
    wanted = {stage.key for plan in plans for stage in plan.stages}
    return [store.stage_dir(key) for key in store.stage_keys() if key not in wanted]


def remove(folders: list[Path]) -> int:
    """Delete stage folders (and their fan-out folder once empty); returns the bytes freed."""
    freed = 0
    for folder in folders:
        freed += sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
        shutil.rmtree(folder)
        if not any(folder.parent.iterdir()):
            folder.parent.rmdir()
    return freed


@dataclass(frozen=True)
class Verified:
    """`ltspec verify`: the stages checked, how many are complete and intact, and the damage of the broken ones."""

    root: Path
    checked: int
    intact: int
    broken: dict[str, list]  # stage key -> its damaged files (`ltspec.store.Damage`)

    def summary(self) -> str:
        return (f"{self.root}: {self.checked} stages checked, {self.intact} complete and intact, {len(self.broken)} "
                f"broken, {self.checked - self.intact - len(self.broken)} not done")


def verify(store: Store, keys: list[str], *, set_aside: bool = False) -> Verified:
    """Read every byte each stage's record vouches for; with `set_aside`, move damaged files aside (never deleting
    them) so that the next run recomputes their stages."""
    damage = {key: store.verify_stage(key, full=True) for key in keys}
    intact = sum(not found and store.record(key) is not None for key, found in damage.items())
    broken = {key: found for key, found in damage.items() if found}
    if set_aside:
        for found in broken.values():
            store.set_aside(found)
    return Verified(store.root, len(keys), intact, broken)
