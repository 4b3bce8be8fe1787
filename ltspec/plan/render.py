"""A plan for people and for scripts: the tree `ltspec plan --tree` prints, and the JSON of `ltspec plan --json`.

The tree groups stages as a researcher reads them: trunk (a dense run) -> mask generator -> mask -> the stages on
that mask; a half-trained stage says how far it got. rich is imported only to draw the tree.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ltspec.kinds.base import canonical
from ltspec.plan.compile import Plan

if TYPE_CHECKING:
    from rich.tree import Tree


def plan_json(compiled: Plan, done: set[str], partial: dict[str, int] | None = None,
              slurm: dict | None = None) -> dict:
    """`slurm`: stage key -> its state on Slurm (`ltspec.runners.slurm.StageState`), for a store with Slurm jobs."""
    partial = partial or {}
    return {
        "name": compiled.name, "spec_hash": compiled.spec_hash, "epochs": compiled.epochs,
        "naive_epochs": compiled.naive_epochs,
        "stages": [{"key": s.key, "kind": s.kind.name, "parents": list(s.parents), "epochs": s.epochs,
                    "done": s.key in done, "epochs_done": partial.get(s.key, s.epochs if s.key in done else 0),
                    "description": s.describe(), "labels": s.labels, "config": canonical(s.config),
                    "runtime": s.runtime,
                    **({"slurm": {**dataclasses.asdict(slurm[s.key]), "log": str(slurm[s.key].log or "")}}
                       if slurm else {})} for s in compiled.stages],
        "arms": [{**arm.__dict__} for arm in compiled.arms],
    }


def plan_tree(compiled: Plan, done: set[str], partial: dict[str, int] | None = None,
              slurm: dict | None = None) -> Tree:
    """Trunk -> generator -> mask -> the stages on that mask, by each kind's `place`; a half-trained stage says how
    far it got, and with `slurm` (stage key -> its state there) a stage not done says where it stands on Slurm."""
    from rich.markup import escape
    from rich.tree import Tree

    partial = partial or {}
    colors = {"running": "cyan", "queued": "blue", "failed": "red", "blocked": "red", "stopped": "yellow"}

    def label(stage) -> str:
        mark = "[green]done[/]" if stage.key in done else "[dim]todo[/]"
        if stage.key in partial:
            mark = f"[yellow]{partial[stage.key]}/{stage.epochs} ep done[/]"
        state = (slurm or {}).get(stage.key)
        if state is not None and state.state in colors:
            progress = f", {partial[stage.key]}/{stage.epochs} ep" if stage.key in partial else ""
            mark = f"[{colors[state.state]}]{escape(state.mark())}{progress}[/]"
        epochs = f" {stage.epochs} ep" if stage.epochs and stage.key not in partial else ""
        return f"{stage.describe()} [dim]{stage.key[:10]}[/]{epochs} {mark}"

    root = Tree(f"[bold]{compiled.name}[/] [dim]spec {compiled.spec_hash}[/]")
    masks = {stage.key for stage in compiled.stages if stage.kind.place == "generator"}
    on_mask: dict[str, list] = {}
    for stage in compiled.stages:
        if stage.kind.place == "mask" and stage.parents[1:2] and stage.parents[1] in masks:
            on_mask.setdefault(stage.parents[1], []).append(stage)
    for trunk in compiled.trunks:
        node = root.add(label(trunk))
        generators: dict[str, Tree] = {}
        for stage in compiled.stages:
            if stage.labels.get("trunk") != trunk.key:
                continue
            if stage.kind.place == "mask" and not (stage.parents[1:2] and stage.parents[1] in masks):
                node.add(label(stage))  # on no mask: under its trunk
            if stage.kind.place == "generator":
                name = stage.labels["generator"]
                branch = generators.get(name) or generators.setdefault(name, node.add(f"[bold]{name}[/]"))
                mask_node = branch.add(label(stage))
                for child in on_mask.get(stage.key, []):
                    mask_node.add(label(child))
    return root
