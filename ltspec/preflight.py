"""Before a run starts: is every dataset it needs there (or can it be fetched), and what will the run cost?

A missing dataset found by the first stage fails every trunk once and leaves a FAILED MLflow run for each; found
here, it is one error naming the folder and the flag, and nothing is run or logged. A dataset to download that is
not there yet is checked too, by whether its host answers: an offline machine learns it before the estimate and
the question of a long run, not from a traceback after them. The estimate counts the epochs left to train and
times a few real training steps of each architecture on the chosen device, so a user learns that a plan is GPU
work before the first of its epochs, not after.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ltspec import datasets
from ltspec.data import load_dataset
from ltspec.datasets import DatasetError
from ltspec.download import cannot_download, unreachable
from ltspec.plan import Plan, Stage
from ltspec.plan.status import status
from ltspec.kinds.base import canonical
from ltspec.stages.context import DATA_SEED, model
from ltspec.store import Store
from ltspec.training import make_optimizer, make_scheduler, train_epoch

DAY = 24 * 3600.0
TIMING_EXAMPLES = 128  # at most this many examples per timed step; the time per example is scaled to the batch
TIMING_SECONDS = 2.0  # stop timing an architecture after this long (at least two steps: one warms up)


Fetch = tuple[str, str]  # (dataset, root): a dataset to download once the user agreed to the run


def check_datasets(plans: list[Plan], done: set[str]) -> tuple[list[str], list[Fetch]]:
    """One message for each dataset a stage still to run needs that is not there and cannot be fetched, and the
    datasets to fetch (not there, `download = true`, their host answers).

    Loading is the check of a dataset that is there: it is what the stages do first, and a dataset that loads here
    loads there. One that is not there and is to be downloaded is not fetched yet (the user may still say no to the
    run), but its host must answer now (`ltspec.download.unreachable`, a few seconds at most)."""
    needed: dict[Fetch, bool] = {}
    for plan in plans:
        for stage in plan.stages:
            config = canonical(stage.config)
            if stage.key not in done and "data" in config and "root" in stage.runtime:
                where = (config["data"]["dataset"], stage.runtime["root"])
                needed[where] = needed.get(where, False) or stage.runtime["download"]
    problems, fetch = [], []
    for (name, root), download in needed.items():
        try:
            load_dataset(name, root=root, seed=DATA_SEED)
        except DatasetError as error:
            entry = datasets.info(name)
            reason = unreachable(entry.download_url) if download and entry.download_url else None
            if not (download and entry.downloadable):
                problems.append(f"{name}: {error}")
            elif reason is not None:
                problems.append(cannot_download(entry, Path(root), reason))
            else:
                fetch.append((name, root))
    return problems, fetch


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


def estimate(plans: list[Plan], done: set[str], device: torch.device,
             partial: dict[str, int] | None = None) -> Estimate:
    """Time a few training steps of each architecture (at its batch size, precision and data shape) and multiply by
    the steps of the epochs left (`partial`: the epochs a half-trained stage's checkpoint holds, not trained again,
    so that the estimate counts what `ltspec plan` and the run's bar count); evaluation is counted as a third of a
    training step per example."""
    partial = partial or {}
    epochs: dict[tuple, int] = {}
    stages: dict[tuple, Stage] = {}
    seen = set()
    for plan in plans:
        for stage in plan.stages:
            if stage.key in done or stage.key in seen or not stage.epochs:
                continue
            seen.add(stage.key)
            what = _training_shape(stage)
            epochs[what] = epochs.get(what, 0) + stage.epochs - partial.get(stage.key, 0)
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
    """What an epoch's time depends on: the model, the data and its batch size, the precision."""
    config = stage.config
    return (config.model.arch, config.data.dataset, config.data.batch_size, config.train.precision,
            stage.runtime["eval_batch_size"], config.model)


def _epoch_seconds(stage: Stage, device: torch.device) -> float | None:
    data = datasets.info(stage.config.data.dataset)
    if data.train_size is None or data.test_size is None:
        return None
    per_example = _seconds_per_example(stage, device)
    return per_example * (data.train_size + data.test_size / 3)


def _seconds_per_example(stage: Stage, device: torch.device) -> float:
    """Seconds per training example: real steps of the stage's model on random inputs of the dataset's shape."""
    config = stage.config
    data = datasets.info(config.data.dataset)
    network = model(config.data, config.model, seed=0).to(device)
    batch = min(TIMING_EXAMPLES, config.data.batch_size)
    x = torch.randn(batch, *data.input_shape, device=device)
    y = torch.randint(0, data.num_classes, (batch,), device=device)
    planned = config.train
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
    workers: int | None  # the local runner's stages per device (`ltspec.runners.local.layout`); None: fill it
    fetch: tuple[Fetch, ...] = ()  # datasets to download once the user agreed (`fetch_datasets`)


def prepare_run(loaded_specs: list[tuple], device: str, runner: str, workers: int | None,
                gpus: tuple[int, ...] | None = None) -> Prepared:
    """Everything `ltspec run` settles before it asks to start: every dataset is checked (`DataMissing`: not there
    and not to be fetched, or to be fetched from a host that does not answer) before the estimate times a single
    training step; the work left is estimated, and the local runner's stages per device chosen (`workers`; 1 for
    work estimated under `SIDE_BY_SIDE_SECONDS`; else None, the machine filled: `ltspec.runners.local.layout` over
    `gpus`). Its workers' server is started as soon as it will likely be needed, so that its imports overlap the
    rest of the start-up. Datasets to download are fetched later, by `fetch_datasets(prepared.fetch)`, once the
    user has agreed to the run."""
    from ltspec.runners.common import resolve_device
    from ltspec.runners.local import EARLY_START_EPOCHS, SIDE_BY_SIDE_SECONDS, layout
    from ltspec.runners.workers import start_server

    plans = [compiled for _, _, compiled in loaded_specs]
    found = [status(compiled, Store(Path(loaded.spec.storage.root))) for _, loaded, compiled in loaded_specs]
    done = frozenset().union(*(one.done for one in found))
    partial = {key: epoch for one in found for key, epoch in one.partial.items()}
    problems, fetch = check_datasets(plans, done)
    if problems:
        raise DataMissing(problems)
    if runner != "local":
        return Prepared(done, None, workers, tuple(fetch))
    where = resolve_device(device, gpus)
    if workers != 1 and where.type == "cpu" and \
            sum(s.epochs for plan in plans for s in plan.stages if s.key not in done) >= EARLY_START_EPOCHS:
        start_server()  # before the estimate (seconds of imports and timed steps), likely to need it
    timed = estimate(plans, done, where, partial)
    if workers is None and timed.seconds is not None and timed.seconds < SIDE_BY_SIDE_SECONDS:
        workers = 1
    at_once = min(len(layout(loaded, compiled, where, workers=workers, gpus=gpus).slots)
                  for _, loaded, compiled in loaded_specs)
    if at_once > 1:
        start_server()
    return Prepared(done, dataclasses.replace(timed, at_once=at_once), workers, tuple(fetch))


def fetch_datasets(fetch: tuple[Fetch, ...]) -> None:
    """Download the datasets `prepare_run` found to fetch; `DataMissing` where that fails (nothing is left
    half-written: `ltspec.download.download_archive`)."""
    problems = []
    for name, root in fetch:
        try:
            load_dataset(name, root=root, download=True, seed=DATA_SEED)
        except DatasetError as error:
            problems.append(str(error))
    if problems:
        raise DataMissing(problems)
