"""The local runner: every stage of a plan in this process, on one device, in dependency order.

It decides only where and when, on as many threads as a Ray task (`stage_threads`, so that both runners give the
same numbers): what a stage does, and its life from claim to record, is `ltspec.stages.run_stage`. A failed stage does not stop the run: its descendants are skipped, everything
independent of it still runs, and the summary lists the failures.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from ltspec import tracking
from ltspec.plan import Plan, Stage
from ltspec.plan.status import status
from ltspec.runners.common import (Summary, close_trunks, connect, progress_columns, resolve_device, stage_threads,
                                   threads)
from ltspec.spec import LoadedSpec
from ltspec.stages import Context, StageFailed, run_stage
from ltspec.store import Store


def run_local(loaded: LoadedSpec, plan: Plan, *, device: str = "auto", console: Console | None = None,
              plan_json: dict | None = None, track: bool = True) -> Summary:
    """Execute every stage of the plan that is not done yet; Ctrl-C stops after marking the current run KILLED."""
    console = console or Console()
    where = resolve_device(device)
    tracker = connect(loaded, plan) if track else None
    ctx = Context(store=Store(Path(loaded.spec.storage.root)), device=where,
                  stages={stage.key: stage for stage in plan.stages}, tracker=tracker,
                  runs=tracking.runs_by_stage(tracker) if tracker else None)
    summary, left = Summary(), status(plan, ctx.store).epochs_left
    with Progress(*progress_columns(), console=console, transient=False) as progress:
        overall = progress.add_task(f"stages 0/{len(plan.stages)}", total=max(left, 1), info="epochs", eta=True)
        current = progress.add_task("", total=1, info="", visible=False)

        def on_epoch(stage: Stage, epoch: int, values: dict[str, float]) -> None:
            accuracy = f"test {values['test_accuracy']:.3f}" if "test_accuracy" in values else \
                f"acc {values['train_accuracy']:.3f}"
            progress.update(current, completed=epoch, info=f"{accuracy} loss {values['train_loss']:.3f}")
            progress.advance(overall)

        ctx.on_epoch = on_epoch
        try:
            with threads(stage_threads(loaded.spec)):
                for count, stage in enumerate(plan.stages, 1):
                    _run_one(stage, ctx, summary, progress, current)
                    progress.update(overall, description=f"stages {count}/{len(plan.stages)}")
        finally:
            if tracker is not None:
                close_trunks(tracker, ctx.trunk_runs, loaded, plan_json)
    return summary


def _run_one(stage: Stage, ctx: Context, summary: Summary, progress: Progress, current) -> None:
    if any(parent in summary.failed or parent in summary.blocked for parent in stage.parents):
        summary.blocked.append(stage.key)
        return
    progress.update(current, description=stage.describe(), total=max(stage.epochs, 1), completed=0, info="",
                    visible=stage.epochs > 0)
    try:
        _, ran = run_stage(stage, ctx)
    except StageFailed as failure:
        summary.failed[stage.key] = str(failure)
        progress.console.print(f"[red]failed:[/] {failure}")
        return
    (summary.ran if ran else summary.done).append(stage.key)
