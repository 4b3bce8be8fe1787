"""`ltspec plan`: the stage DAG of specs, what the store has done, and the epochs sharing saves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ltspec.cli.shell import OnlyOption, SpecsArg, fail, frozen_at_exit, load_all, say, status, warn_unequal


@frozen_at_exit
def plan(specs: SpecsArg, only: OnlyOption = [],
         as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON for scripts.")] = False,
         estimate: Annotated[bool, typer.Option("--estimate", help="Time a few training steps of each "
                                                "architecture and estimate the wall time left.")] = False,
         device: Annotated[str, typer.Option(help="Device of the estimate: auto, cpu, cuda or cuda:N.")] = "auto"):
    """Show the stage DAG grouped by dense trunk, the epochs to train, and the epochs sharing saves.

    Several specs (or a folder) are shown as one plan, each stage they share once, as a shared store runs them."""
    from ltspec.plan.combine import combine
    from ltspec.plan.render import plan_json, plan_tree

    loaded = load_all(specs, only)
    combined = combine([compiled for _, _, compiled in loaded], ", ".join(c.name for _, _, c in loaded))
    compiled = combined.plan
    found = [status(part, spec.spec.storage.root) for _, spec, part in loaded]
    done = set().union(*(one.done for one in found))
    partial = {key: epoch for one in found for key, epoch in one.partial.items()}
    on_slurm = slurm_states(loaded, done)
    if as_json:
        typer.echo(json.dumps(plan_json(compiled, done, partial, on_slurm), indent=2))
        return
    from rich.console import Console

    Console().print(plan_tree(compiled, done, partial, on_slurm))
    say_slurm(compiled, on_slurm)
    for path, one, _ in loaded:
        for key, base, values in one.swept():
            replaced = f", replacing {json.dumps(base)} set in the file" if base is not None else ""
            where = f"{Path(path).name}: " if len(loaded) > 1 else ""
            typer.echo(f"{where}the sweep sets {key} to {', '.join(map(json.dumps, values))}{replaced}")
    if estimate:
        typer.echo("estimate: " + estimated([part for _, _, part in loaded], done, device).describe())
    remaining = sum(stage.epochs - partial.get(stage.key, 0) for stage in compiled.stages if stage.key not in done)
    typer.echo(f"{len(compiled.stages)} stages, {len(done)} already done; {remaining} of {compiled.epochs} epochs "
               f"left to train; sharing saves {combined.naive_epochs - compiled.epochs} of {combined.naive_epochs} "
               "epochs")
    if len(loaded) > 1:
        typer.echo(f"{len(loaded)} specs, {len(compiled.trunks)} dense trunks: run apart they would train "
                   f"{combined.separate_epochs} epochs; sharing across the specs saves "
                   f"{combined.separate_epochs - compiled.epochs}")
    warn_unequal(compiled)


def slurm_states(loaded: list[tuple], done: set[str]) -> dict | None:
    """Each stage's state on Slurm (`ltspec.runners.slurm.StageState`) where a spec's store has had Slurm jobs."""
    from ltspec.runners.slurm import SlurmError, plan_states

    found = {}
    for _, spec, part in loaded:
        try:
            found.update(plan_states(part, done, Path(spec.spec.storage.root).resolve()) or {})
        except SlurmError as error:
            say("note:", "yellow", f"no Slurm status: {error}")
    return found or None


def say_slurm(compiled, states: dict | None) -> None:
    """A count of the stages by Slurm state, and each failed or stopped stage with its message and job log."""
    if not states:
        return
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state.state] = counts.get(state.state, 0) + 1
    typer.echo("on Slurm: " + ", ".join(f"{count} {name}" for name, count in counts.items()))
    for key, state in states.items():
        if state.state in ("failed", "stopped"):
            say(f"{state.state}:", "red" if state.state == "failed" else "yellow",
                f"{compiled.stage(key).describe()} (job {state.job}): {state.detail}; log {state.log}")


def estimated(plans, done: set[str], device: str):
    """The time left to train, from a few timed steps on the device (`ltspec.preflight.estimate`)."""
    from ltspec.preflight import estimate
    from ltspec.runners.common import resolve_device

    try:
        return estimate(plans, done, resolve_device(device))
    except ValueError as error:
        raise fail(str(error)) from None
