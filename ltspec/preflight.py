"""Before a run starts: is every dataset it needs there, and what will the run cost?

A missing dataset found by the first stage fails every trunk once and leaves a FAILED MLflow run for each; found
here, it is one error naming the folder and the flag, and nothing is run or logged. The estimate counts the epochs
left to train and times a few real training steps of each architecture on the chosen device, so a user learns that a
plan is GPU work before the first of its epochs, not after.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ltspec import datasets
from ltspec.data import DatasetError, load_dataset
from ltspec.plan import Plan, Stage
from ltspec.stages.context import DATA_SEED, model
from ltspec.stages.harness import recipe
from ltspec.store import Store
from ltspec.training import make_optimizer, make_scheduler, train_epoch

DAY = 24 * 3600.0
TIMING_EXAMPLES = 128  # at most this many examples per timed step; the time per example is scaled to the batch
TIMING_SECONDS = 2.0  # stop timing an architecture after this long (at least two steps: one warms up)


def check_datasets(plans: list[Plan], done: set[str], *, fetched: bool | None = None) -> list[str]:
    """One message for each dataset a stage still to run needs but that is neither present nor downloadable.

    Loading is the check: it is what the stages do first, and a dataset that loads here loads there. `fetched`
    keeps only the datasets whose spec says `download = true` (True) or does not (False): a dataset that will not
    be fetched can be checked before the run is estimated and confirmed, a download waits until the user agreed.
    """
    needed = {}
    for plan in plans:
        for stage in plan.stages:
            if stage.key not in done and "data" in stage.config and "root" in stage.runtime:
                data = stage.config["data"]
                needed[(data["dataset"], stage.runtime["root"])] = stage.runtime["download"]
    problems = []
    for (name, root), download in needed.items():
        if fetched is not None and download != fetched:
            continue
        try:
            load_dataset(name, root=root, download=download, seed=DATA_SEED)
        except DatasetError as error:
            problems.append(f"{name}: {error}")
    return problems


@dataclass(frozen=True)
class Estimate:
    """Epochs left to train and the time they take on one device, in total and by architecture."""

    device: str
    epochs: int
    seconds: float | None  # one stage at a time; None when a dataset's size is unknown (a plugin's without sizes)
    by_arch: dict[str, tuple[int, float | None]]
    at_once: int = 1  # stages trained side by side (the local runner's workers)

    @property
    def wall_seconds(self) -> float | None:
        """The time with `at_once` stages side by side, at best: a plan's dependencies may leave workers idle."""
        return None if self.seconds is None else self.seconds / self.at_once

    def describe(self) -> str:
        if self.epochs == 0:
            return "nothing left to train"
        parts = ", ".join(f"{arch} {epochs} epochs" + ("" if seconds is None else f" ({duration(seconds)})")
                          for arch, (epochs, seconds) in sorted(self.by_arch.items()))
        total = "unknown time" if self.seconds is None else f"about {duration(self.wall_seconds)}"
        at_once = "one stage at a time" if self.at_once == 1 else f"{self.at_once} stages at a time"
        return f"{self.epochs} epochs to train, {total} on {self.device}, {at_once}: {parts}"


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * DAY:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / DAY:.1f} days"


def estimate(plans: list[Plan], done: set[str], device: torch.device) -> Estimate:
    """Time a few training steps of each architecture (at its batch size, precision and data shape) and multiply by
    the steps of the epochs left; evaluation is counted as a third of a training step per example."""
    epochs: dict[tuple, int] = {}
    stages: dict[tuple, Stage] = {}
    seen = set()
    for plan in plans:
        for stage in plan.stages:
            if stage.key in done or stage.key in seen or not stage.epochs:
                continue
            seen.add(stage.key)
            what = _training_shape(stage)
            epochs[what] = epochs.get(what, 0) + stage.epochs
            stages.setdefault(what, stage)
    by_arch: dict[str, tuple[int, float | None]] = {}
    for what, count in epochs.items():
        seconds = _epoch_seconds(stages[what], device)
        arch = what[0]
        known, total = by_arch.get(arch, (0, 0.0))
        by_arch[arch] = (known + count, None if seconds is None or total is None else total + count * seconds)
    seconds = [value for _, value in by_arch.values()]
    total = None if None in seconds else sum(seconds)
    return Estimate(device.type, sum(epochs.values()), total, by_arch)


def _training_shape(stage: Stage) -> tuple:
    config = stage.config
    train = config["train"]
    return (config["model"]["arch"], config["data"]["dataset"], config["data"]["batch_size"], train["precision"],
            stage.runtime["eval_batch_size"], repr(config["model"]))


def _epoch_seconds(stage: Stage, device: torch.device) -> float | None:
    data = datasets.info(stage.config["data"]["dataset"])
    if data.train_size is None or data.test_size is None:
        return None
    per_example = _seconds_per_example(stage, device)
    return per_example * (data.train_size + data.test_size / 3)


def _seconds_per_example(stage: Stage, device: torch.device) -> float:
    """Seconds per training example: real steps of the stage's model on random inputs of the dataset's shape."""
    config = stage.config
    data = datasets.info(config["data"]["dataset"])
    network = model(config, seed=0).to(device)
    shape = (data.in_channels, *(data.input_size,) * (2 if data.input_kind == "image" else 1))
    batch = min(TIMING_EXAMPLES, config["data"]["batch_size"])
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, data.num_classes, (batch,), device=device)
    planned = recipe(config["train"])
    optimizer = make_optimizer(network.parameters(), planned.lr, planned.optimizer)
    scheduler = make_scheduler(optimizer, planned.schedule, epochs=1, steps_per_epoch=1)
    train_epoch(network, [(x, y)], optimizer, scheduler, precision=planned.precision)  # warm up
    # train_epoch reads its loss back to the host, so each call ends when the device has finished the step
    steps, started = 0, time.perf_counter()
    while steps < 5 and (steps == 0 or time.perf_counter() - started < TIMING_SECONDS):
        train_epoch(network, [(x, y)], optimizer, scheduler, precision=planned.precision)
        steps += 1
    return (time.perf_counter() - started) / (steps * batch)


class DataMissing(Exception):
    """A dataset the run needs is neither there nor to be fetched: one message per dataset."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("a dataset this run needs is not there, so nothing was run: " + " ".join(problems))


@dataclass(frozen=True)
class Prepared:
    """A run about to start: what the store has done, the estimate of the rest, and how many stages at once."""

    done: frozenset[str]
    estimate: Estimate | None  # None for a runner that trains elsewhere (the estimate times this machine)
    workers: int


def prepare_run(loaded_specs: list[tuple], device: str, runner: str, workers: int | None) -> Prepared:
    """Everything `ltspec run` settles before it asks to start: the datasets that will not be downloaded are
    checked (`DataMissing`), before the estimate times a single training step; the work left is estimated, and the
    local runner's stages at once chosen (`workers`, else `default_workers` for the work estimated). Its workers'
    server is started as soon as it will likely be needed, so that its imports overlap the rest of the start-up.
    Datasets to download are fetched later, by `fetch_datasets`, once the user has agreed to the run."""
    from ltspec.runners.common import resolve_device
    from ltspec.runners.local import EARLY_START_EPOCHS, default_workers
    from ltspec.runners.workers import start_server

    plans = [compiled for _, _, compiled in loaded_specs]
    done = frozenset().union(*(_done(compiled, Path(loaded.spec.storage.root)) for _, loaded, compiled in loaded_specs))
    _raise_if_missing(check_datasets(plans, done, fetched=False))
    if runner != "local":
        return Prepared(done, None, workers or 1)
    where = resolve_device(device)
    if workers != 1 and where.type == "cpu" and \
            sum(s.epochs for plan in plans for s in plan.stages if s.key not in done) >= EARLY_START_EPOCHS:
        start_server()  # before the estimate (seconds of imports and timed steps), likely to need it
    found = estimate(plans, done, where)
    workers = workers or min(default_workers(loaded.spec, where, found.seconds) for _, loaded, _ in loaded_specs)
    if workers > 1:
        start_server()
    return Prepared(done, dataclasses.replace(found, at_once=workers), workers)


def fetch_datasets(plans: list[Plan], done: frozenset[str]) -> None:
    """Download what the specs ask to download (`data.download = true`); `DataMissing` where that fails."""
    _raise_if_missing(check_datasets(plans, done, fetched=True))


def _raise_if_missing(problems: list[str]) -> None:
    if problems:
        raise DataMissing(problems)


def _done(plan: Plan, root: Path) -> set[str]:
    store = Store(root)
    return {stage.key for stage in plan.stages if store.is_complete(stage.key)}
