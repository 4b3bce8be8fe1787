"""The local runner: every stage of a plan on this machine, in dependency order, one at a time in this process or
several side by side in worker processes (`ltspec.runners.workers`): on a CPU one per core, on GPUs several to
each GPU, spread over every GPU of the machine (`ltspec.runners.slots`, `ltspec run --workers`, `--gpus`).

It decides only where and when, on as many threads as a Ray task (`stage_threads`, so that both runners give the
same numbers) and with the same GPU settings (`reproducible`): what a stage does, and its life from claim to
record, is `ltspec.stages.run_stage`. Which ready stage takes a free slot is `ltspec.runners.schedule`'s rule,
critical path first. A failed stage does not stop the run: its descendants are skipped, everything independent of
it still runs, and the summary lists the failures.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from rich.console import Console
from rich.progress import Progress

from ltspec import preemption, tracking
from ltspec.plan import Plan, Stage
from ltspec.plan.status import status
from ltspec.runners.common import (Summary, Workspace, architecture, close_trunks, connect, progress_columns,
                                   reproducible, resolve_device, stage_threads, threads)
from ltspec.runners.schedule import Frontier, critical_path_first, epochs_cost
from ltspec.runners.slots import Layout, gpu_indices, gpu_share, memory_fraction, slots, stages_per_gpu
from ltspec.runners.workers import Job, Workers
from ltspec.spec import LoadedSpec
from ltspec.stages import Context, StageFailed, run_stage
from ltspec.store import Store

SIDE_BY_SIDE_SECONDS = 10.0  # training left, one stage at a time, below which the local runner keeps to one
EARLY_START_EPOCHS = 200  # epochs left from which `ltspec run` starts the workers' server before its estimate


def run_local(loaded: LoadedSpec, plan: Plan, *, device: str = "auto", console: Console | None = None,
              plan_json: dict | None = None, track: bool = True, workers: int | None = 1,
              gpus: Sequence[int] | None = None) -> Summary:
    """Execute every stage of the plan that is not done yet on the slots `layout` gives for `device`, `workers`
    and `gpus` (one slot: one stage at a time, in this process); Ctrl-C stops after marking the current runs
    KILLED."""
    console = console or Console()
    placed = layout(loaded, plan, resolve_device(device, gpus), workers=workers, gpus=gpus)
    memory = gpu_memory(placed)
    tracker = connect(loaded, plan) if track else None
    ctx = Context(store=Store(Path(loaded.spec.storage.root)), device=torch.device(placed.slots[0].device),
                  stages={stage.key: stage for stage in plan.stages}, tracker=tracker,
                  runs=tracking.runs_by_stage(tracker) if tracker else None)
    try:
        with threads(stage_threads(loaded.spec)):
            return run_stages(plan, ctx, placed, memory, console, deterministic=loaded.spec.resources.deterministic)
    finally:
        if tracker is not None:
            close_trunks(tracker, ctx.trunk_runs, loaded, plan_json)


def run_stages(plan: Plan, ctx: Context, placed: Layout, memory: dict[str, int], console: Console | None = None,
               events: Events | None = None, deterministic: bool = False) -> Summary:
    """The stages of `plan` not done yet on the slots of `placed` (`memory`: `gpu_memory`), with the progress
    display, on this process's torch threads: the part of a run after its set-up, which a Slurm job
    (`ltspec.runners.slurm_job`) runs on its share of a plan. A stage's parents outside `plan` must be complete in
    the store; `ctx.stages` has them. `events` hears every start, epoch and end (a Slurm job writes them to a file
    its submitter follows)."""
    with Progress(*progress_columns(), console=console or Console(), transient=False) as progress:
        display = Display(progress, plan, status(plan, ctx.store).epochs_left, events)
        ctx.on_epoch = lambda stage, epoch, values: display.epoch(stage.key, epoch, values)
        with reproducible(deterministic):
            if len(placed.slots) > 1:
                _side_by_side(plan, ctx, placed, memory, display, deterministic)
            else:
                for stage in plan.stages:
                    _in_process(stage, ctx, display)
    return display.summary


def layout(loaded: LoadedSpec, plan: Plan, device: torch.device, *, workers: int | None = None,
           gpus: Sequence[int] | None = None) -> Layout:
    """The slots of a run, by `workers` per device (None: fill the machine).

    On a CPU, `workers` slots; None: as many as its cores hold at `resources.cpus` threads each (one core per
    small-net stage is its fastest setting, so N cores train N stages in about the time of one). On GPUs (those of
    `gpus`, else the one `device` names, else every visible one), `workers` slots on each GPU, every stage in one
    of them, as `resources.gpu_share = 1 / workers` would pack them; None: each stage takes its share of a GPU
    (`resources.gpu_share`, else a quarter for a small net and the whole GPU for a large one), and each GPU has as
    many slots as the smallest share fits. `ltspec run` passes `workers=1` for a plan whose training is estimated
    under `SIDE_BY_SIDE_SECONDS`: the workers' server takes seconds of a core to start."""
    if device.type == "cuda":
        chosen = gpu_indices(str(device), gpus, torch.cuda.device_count())
        share = 1.0 / workers if workers else loaded.spec.resources.gpu_share
        stages = {stage.key: stage for stage in plan.stages}
        shares = {key: gpu_share(architecture(stage, stages), share) for key, stage in stages.items()}
        return Layout(slots([f"cuda:{index}" for index in chosen], workers or stages_per_gpu(shares.values())),
                      shares)
    gpu_indices(str(device), gpus, 0)  # refuses --gpus off a GPU
    if device.type == "cpu" and workers is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = max(1, cores // stage_threads(loaded.spec))
    return Layout(slots([str(device)], workers or 1))


def gpu_memory(placed: Layout) -> dict[str, int]:
    """The memory of each GPU that several stages share, in bytes, having checked that each stage's cap leaves it
    room (`memory_fraction` refuses more stages per GPU than its memory holds)."""
    memory = {device: torch.cuda.get_device_properties(device).total_memory
              for device, count in placed.per_device.items() if device.startswith("cuda") and count > 1}
    for device, total in memory.items():
        memory_fraction(1, placed.per_device[device], total)
    return memory


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


def _side_by_side(plan: Plan, ctx: Context, placed: Layout, memory: dict[str, int], display: Display,
                  deterministic: bool) -> None:
    """The stages not complete in the store, on a worker process per slot, each as soon as its parents are done
    and a slot of its device is free (the schedule's rule: critical path first), its memory capped on a shared GPU
    (`memory`: `gpu_memory`); complete ones are settled here, logged to this experiment where it lacks them,
    without starting a worker."""
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
    frontier = Frontier(left, critical_path_first(left, epochs_cost))
    free, held = dict(placed.per_device), {}  # free slots by device; each running stage's (device, slots)

    def settle(key: str, outcome: str, message: str | None = None) -> None:
        display.end(key, outcome, message)
        frontier.settle(key)

    job = Job(Workspace.of(ctx.store, ctx.tracker, torch.get_num_threads(), deterministic), ctx.stages, ctx.runs,
              ctx.trunk_runs)
    with Workers(placed.slots, job, started=len(left)) as pool:
        while True:
            while (taken := frontier.take(placed.need, free)) is not None:
                stage, device = taken
                if display.parent_failed(stage):
                    settle(stage.key, "blocked")
                    continue
                count = placed.need(stage, device)
                held[stage.key] = device, count
                free[device] -= count
                cap = memory_fraction(count, placed.per_device[device], memory[device]) if device in memory else None
                display.start(stage)
                pool.send(pool.idle(device), stage.key, cap)
            if not pool.busy():  # and so nothing ready either: every stage is settled
                return
            for key, outcome, message in pool.messages(display.epoch):
                device, count = held.pop(key)
                free[device] += count
                settle(key, outcome, message)


def launch(loaded: LoadedSpec, plan: Plan, options, **display) -> Summary:
    """`ltspec run --runner local` (`ltspec.runners.launch`)."""
    return run_local(loaded, plan, device=options.device, workers=options.workers, gpus=options.gpus, **display)
