"""The local runner: every stage of a plan on this machine and one device, in dependency order, one at a time in
this process or several side by side in worker processes (`ltspec.runners.workers`, `ltspec run --workers`).

It decides only where and when, on as many threads as a Ray task (`stage_threads`, so that both runners give the
same numbers): what a stage does, and its life from claim to record, is `ltspec.stages.run_stage`. A failed stage
does not stop the run: its descendants are skipped, everything independent of it still runs, and the summary lists
the failures.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable
from pathlib import Path

import torch

from rich.console import Console
from rich.progress import Progress

from ltspec import preemption, tracking
from ltspec.plan import Plan, Stage
from ltspec.plan.status import status
from ltspec.runners.common import (Summary, Workspace, close_trunks, connect, progress_columns, resolve_device,
                                   stage_threads, threads)
from ltspec.runners.workers import Job, Workers
from ltspec.spec import LoadedSpec, Spec
from ltspec.stages import Context, StageFailed, run_stage
from ltspec.store import Store

SIDE_BY_SIDE_SECONDS = 10.0  # training left, one stage at a time, below which the local runner keeps to one
EARLY_START_EPOCHS = 200  # epochs left from which `ltspec run` starts the workers' server before its estimate


def run_local(loaded: LoadedSpec, plan: Plan, *, device: str = "auto", console: Console | None = None,
              plan_json: dict | None = None, track: bool = True, workers: int = 1) -> Summary:
    """Execute every stage of the plan that is not done yet, `workers` stages at a time (see `default_workers`);
    Ctrl-C stops after marking the current runs KILLED."""
    where = resolve_device(device)
    tracker = connect(loaded, plan) if track else None
    ctx = Context(store=Store(Path(loaded.spec.storage.root)), device=where,
                  stages={stage.key: stage for stage in plan.stages}, tracker=tracker,
                  runs=tracking.runs_by_stage(tracker) if tracker else None)
    try:
        with threads(stage_threads(loaded.spec)):
            return run_stages(plan, ctx, workers, console)
    finally:
        if tracker is not None:
            close_trunks(tracker, ctx.trunk_runs, loaded, plan_json)


def run_stages(plan: Plan, ctx: Context, workers: int = 1, console: Console | None = None,
               events: Events | None = None) -> Summary:
    """The stages of `plan` not done yet, with the progress display, on this process's torch threads: the part of
    a run after its set-up, which a Slurm job (`ltspec.runners.slurm_job`) runs on its share of a plan. A stage's
    parents outside `plan` must be complete in the store; `ctx.stages` has them. `events` hears every start,
    epoch and end (a Slurm job writes them to a file its submitter follows)."""
    with Progress(*progress_columns(), console=console or Console(), transient=False) as progress:
        display = Display(progress, plan, status(plan, ctx.store).epochs_left, events)
        ctx.on_epoch = lambda stage, epoch, values: display.epoch(stage.key, epoch, values)
        if workers > 1:
            _side_by_side(plan, ctx, workers, display)
        else:
            for stage in plan.stages:
                _in_process(stage, ctx, display)
    return display.summary


def default_workers(spec: Spec, device: torch.device, seconds: float | None = None) -> int:
    """How many stages `ltspec run` trains at once: on a CPU, as many as its cores hold at `resources.cpus`
    threads each (one core per small-net stage is its fastest setting, so N cores train N stages in about the
    time of one), unless the training left is estimated at under `SIDE_BY_SIDE_SECONDS` one at a time (`seconds`):
    the workers' server takes seconds of a core to start. On a GPU one, since stages on one device only contend
    (pack small nets on a GPU with Ray's `resources.gpu_share`)."""
    if device.type != "cpu" or seconds is not None and seconds < SIDE_BY_SIDE_SECONDS:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // stage_threads(spec))


Events = Callable[[dict], None]  # {"event": "start" | "epoch" | "end", "stage": key, ...}


class Display:
    """The run's progress: epochs left overall with an ETA, a bar for each stage running, and the summary; each
    start, epoch and end also goes to `events`, when given."""

    def __init__(self, progress: Progress, plan: Plan, epochs_left: int, events: Events | None = None):
        self.progress, self.plan, self.summary = progress, plan, Summary()
        self.events = events or (lambda event: None)
        self.overall = progress.add_task(f"stages 0/{len(plan.stages)}", total=max(epochs_left, 1), info="epochs",
                                         eta=True)
        self.bars: dict[str, int] = {}

    def start(self, stage: Stage) -> None:
        self.events({"event": "start", "stage": stage.key})
        self.bars[stage.key] = self.progress.add_task(stage.describe(), total=max(stage.epochs, 1), info="",
                                                      visible=stage.epochs > 0)

    def epoch(self, key: str, epoch: int, values: dict[str, float]) -> None:
        """A stage's finished epoch; the epochs of a done parent replayed inside a stage (a rewind point it lacks)
        have no bar and are not in the plan's count, so they move nothing."""
        if key not in self.bars:
            return
        self.events({"event": "epoch", "stage": key, "epoch": epoch, "values": values})
        accuracy = f"test {values['test_accuracy']:.3f}" if "test_accuracy" in values else \
            f"acc {values['train_accuracy']:.3f}"
        self.progress.update(self.bars[key], completed=epoch, info=f"{accuracy} loss {values['train_loss']:.3f}")
        self.progress.advance(self.overall)

    def end(self, key: str, outcome: str, message: str | None = None) -> None:
        """A stage's outcome: ran, done (found complete), failed (with its message) or blocked (a parent failed)."""
        self.events({"event": "end", "stage": key, "outcome": outcome, "message": message})
        summary = self.summary
        if outcome == "failed":
            summary.failed[key] = message
            self.progress.console.print(f"[red]failed:[/] {message}")
        else:
            {"ran": summary.ran, "done": summary.done, "blocked": summary.blocked}[outcome].append(key)
        if key in self.bars:
            self.progress.remove_task(self.bars.pop(key))
        settled = len(summary.ran) + len(summary.done) + len(summary.failed) + len(summary.blocked)
        self.progress.update(self.overall, description=f"stages {settled}/{len(self.plan.stages)}")

    def parent_failed(self, stage: Stage) -> bool:
        """Whether a parent of the stage failed or was blocked, so that the stage is blocked."""
        return any(parent in self.summary.failed or parent in self.summary.blocked for parent in stage.parents)


def _in_process(stage: Stage, ctx: Context, display: Display) -> None:
    if display.parent_failed(stage):
        display.end(stage.key, "blocked")
        return
    display.start(stage)
    try:
        _, ran = run_stage(stage, ctx)
    except StageFailed as failure:
        display.end(stage.key, "failed", str(failure))
        return
    display.end(stage.key, "ran" if ran else "done")


def _side_by_side(plan: Plan, ctx: Context, count: int, display: Display) -> None:
    """The stages not complete in the store, on `count` worker processes, each as soon as its parents are done
    (the first in plan order when several are ready); complete ones are settled here, logged to this experiment
    where it lacks them, without starting a worker."""
    left = []
    for stage in plan.stages:
        if ctx.store.is_complete(stage.key):
            _in_process(stage, ctx, display)
        else:
            left.append(stage)
    if not left:
        return
    if ctx.tracker is not None:  # created here, before any worker starts, so that two never race to create one
        with preemption.deferred():
            for trunk in dict.fromkeys(stage.trunk for stage in left):
                ctx.trunk_runs.setdefault(trunk, tracking.trunk_run(ctx.tracker, ctx.stages[trunk]))
    order = {stage.key: index for index, stage in enumerate(left)}
    waiting = {stage.key: sum(parent in order for parent in stage.parents) for stage in left}
    children: dict[str, list[str]] = {}
    for stage in left:
        for parent in stage.parents:
            children.setdefault(parent, []).append(stage.key)
    ready = [order[key] for key, count_left in waiting.items() if count_left == 0]
    heapq.heapify(ready)

    def settle(key: str, outcome: str, message: str | None = None) -> None:
        display.end(key, outcome, message)
        for child in children.get(key, []):
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, order[child])

    job = Job(Workspace.of(ctx.store, ctx.tracker, torch.get_num_threads()), str(ctx.device), ctx.stages, ctx.runs,
              ctx.trunk_runs)
    with Workers(min(count, len(left)), job) as pool:
        while True:
            while ready and pool.idle():
                stage = left[heapq.heappop(ready)]
                if display.parent_failed(stage):
                    settle(stage.key, "blocked")
                    continue
                display.start(stage)
                pool.send(pool.idle()[0], stage.key)
            if not pool.busy():  # and so nothing ready either: every stage is settled
                return
            for key, outcome, message in pool.messages(display.epoch):
                settle(key, outcome, message)


def launch(loaded: LoadedSpec, plan: Plan, options, **display) -> Summary:
    """`ltspec run --runner local` (`ltspec.runners.launch`)."""
    return run_local(loaded, plan, device=options.device, workers=options.workers, **display)
