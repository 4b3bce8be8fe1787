"""`ltspec validate`: every problem of a spec with file:line:column, or a summary of its plan. Never imports torch
or mlflow: a spec check should take a blink."""

from __future__ import annotations

import typer

from ltspec.cli.shell import SpecsArg, frozen_at_exit, load, say, spec_files, split, warn_unequal


@frozen_at_exit
def validate(specs: SpecsArg):
    """Check specs: every problem with file:line:column, or a summary of each compiled plan."""
    failed = False
    paths, overrides = split(specs)
    for spec in spec_files(paths):
        try:
            loaded, plan = load(spec, overrides)
        except typer.Exit:
            failed = True
            continue
        points, seeds = len(loaded.points), len(loaded.spec.seeds)
        say("ok", "green", f"{spec}: {points} sweep point{'s' * (points != 1)} x {seeds} seed{'s' * (seeds != 1)}, "
            f"{len(plan.trunks)} dense trunks, {len(plan.stages)} stages, {plan.epochs} epochs to train "
            f"({plan.naive_epochs} without sharing)")
        warn_unequal(plan)
    if failed:
        raise typer.Exit(2)
