"""The local runner: every stage of a plan in this process, on one device, in dependency order.

It decides only where and when: stage execution (what a stage does) is `ltspec.execution.run_stage`. A failed
stage does not stop the run: its descendants are skipped, everything independent of it still runs, and the
summary lists the failures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ltspec.execution import Context, StageFailed, run_stage
from ltspec.plan import Plan, Stage
from ltspec.spec import LoadedSpec
from ltspec.store import Store
from ltspec import tracking


@dataclass
class Summary:
    """What a run did: stages trained now, found done, failed, and skipped because a parent failed."""

    ran: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    blocked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


def connect(loaded: LoadedSpec, plan: Plan) -> tracking.Tracker:
    spec = loaded.spec
    return tracking.connect(spec.tracking.uri, spec.tracking.experiment or spec.name,
                            {"ltspec.spec_hash": plan.spec_hash, "ltspec.spec_name": spec.name})


def log_spec(tracker: tracking.Tracker, loaded: LoadedSpec, plan_json: dict, trunk_runs: dict[str, str]) -> None:
    """The resolved spec and the plan, as artifacts of every trunk run this run touched."""
    for run_id in trunk_runs.values():
        tracking.log_file(tracker, run_id, loaded.path)
        tracking.log_json(tracker, run_id, "plan.json", plan_json)
        tracking.log_json(tracker, run_id, "spec.resolved.json",
                          [{"sweep": dict(point.values), "spec": point.spec.model_dump(mode="json")}
                           for point in loaded.points])


def run_local(loaded: LoadedSpec, plan: Plan, *, device: str = "auto", console: Console | None = None,
              plan_json: dict | None = None, track: bool = True) -> Summary:
    """Execute every stage of the plan that is not done yet; Ctrl-C stops after marking the current run KILLED."""
    console = console or Console()
    where = resolve_device(device)
    tracker = connect(loaded, plan) if track else None
    ctx = Context(store=Store(Path(loaded.spec.storage.root)), device=where,
                  stages={stage.key: stage for stage in plan.stages}, tracker=tracker,
                  runs=tracking.stage_runs(tracker) if tracker else {})
    summary = Summary()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        overall = progress.add_task("stages", total=len(plan.stages), info="")
        current = progress.add_task("", total=1, info="", visible=False)

        def on_epoch(stage: Stage, epoch: int, values: dict[str, float]) -> None:
            info = f"loss {values['train_loss']:.3f} acc {values['train_accuracy']:.3f}"
            if "test_accuracy" in values:
                info += f" test {values['test_accuracy']:.3f}"
            progress.update(current, completed=epoch, info=info)

        ctx.on_epoch = on_epoch
        try:
            for stage in plan.stages:
                _run_one(stage, ctx, summary, progress, current)
                progress.advance(overall)
        finally:
            if tracker is not None and plan_json is not None:
                log_spec(tracker, loaded, plan_json, ctx.trunk_runs)
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
