"""What both runners share: the run summary, the device and MLflow set-up, the spec and plan artifacts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse

import torch
from mlflow import MlflowClient
from rich.progress import BarColumn, MofNCompleteColumn, Task, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column
from rich.text import Text

from ltspec import architectures, preemption, tracking
from ltspec.plan import Plan, Stage
from ltspec.spec import LoadedSpec, Spec
from ltspec.store import Store

SMALL_NET_GPU_SHARE = 0.25  # four small-net stages keep one GPU busy; one alone leaves it mostly idle
LOCAL_URI_SCHEMES = ("", "file", "sqlite")  # a path on the machine that opens it, not a server


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


@dataclass(frozen=True)
class Workspace:
    """Where a worker process (a Ray task's, or a local worker's) finds the store and the MLflow experiment, paths
    made absolute where the run began: a Ray worker's working directory is wherever `ray start` ran, so a relative
    path would name another folder there. `tracking_uri` None: the run logs nothing."""

    store_root: str
    tracking_uri: str | None
    experiment_id: str | None
    tags: dict[str, str]
    threads: int
    log_weights: bool = False

    @classmethod
    def of(cls, store: Store, tracker: tracking.Tracker | None, threads: int) -> Workspace:
        if tracker is None:
            return cls(str(store.root.resolve()), None, None, {}, threads)
        return cls(str(store.root.resolve()), absolute_uri(tracker.client.tracking_uri), tracker.experiment_id,
                   tracker.tags, threads, tracker.log_weights)

    def tracker(self, tags: dict[str, str] | None = None) -> tracking.Tracker | None:
        """The run's experiment, opened from this worker (the run's start created it, so no worker races to), its
        runs tagged with `tags` besides the run's own."""
        if self.tracking_uri is None:
            return None
        return tracking.Tracker(MlflowClient(tracking_uri=self.tracking_uri), self.experiment_id,
                                {**self.tags, **(tags or {})}, self.log_weights)


def absolute_uri(uri: str) -> str:
    """The tracking URI with a relative sqlite or plain path resolved against this working directory."""
    if uri.startswith("sqlite:///"):
        return "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
    if not urlparse(uri).scheme:
        return str(Path(uri).resolve())
    return uri


def local_file(uri: str) -> bool:
    """Whether a tracking URI names a file on the machine that opens it (sqlite, file:, a path), not a server."""
    return urlparse(uri).scheme in LOCAL_URI_SCHEMES


def gpus_per_stage(arch: str, gpu_share: float | None, cluster_gpus: float) -> float:
    """The GPUs one stage asks for: the given share, else a whole GPU for a large net and a quarter for a small one;
    none on a cluster without GPUs, where any request would leave every task waiting forever."""
    if cluster_gpus <= 0:
        return 0.0
    if gpu_share is not None:
        return gpu_share
    return SMALL_NET_GPU_SHARE if architectures.is_small(arch) else 1.0


def located(stage: Stage) -> Stage:
    """The stage with its data folder resolved against this working directory (the key does not change), for a
    worker elsewhere (a Ray task, a Slurm job) whose working directory is another."""
    root = stage.runtime.get("root")
    if root is None or Path(root).is_absolute():
        return stage
    return replace(stage, runtime={**stage.runtime, "root": str(Path(root).resolve())})


def stage_threads(spec: Spec) -> int:
    """The intra-op threads of every stage, in both runners: `resources.cpus` (default 1), whole.

    One setting for both, because a CPU result depends on the thread count (reductions split differently), and
    Ray runs each stage on its `resources.cpus` CPUs. One thread is also the fastest setting for small nets, whose
    per-step work is too small to split: a LeNet-300-100 epoch on the digits took 1.24x as long on two threads, 10x
    with spinning OpenMP threads (benchmarks/threads.py). Raise it for a large net on a CPU; on a GPU it hardly
    matters.
    """
    return max(1, int(spec.resources.cpus))


@contextmanager
def threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count set for a block, then restored (the process may be a notebook or a test)."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


def connect(loaded: LoadedSpec, plan: Plan) -> tracking.Tracker:
    spec = loaded.spec
    tags = {"ltspec.spec_hash": plan.spec_hash, "ltspec.spec_name": spec.name,
            **({tracking.OVERRIDES: " ".join(loaded.overrides)} if loaded.overrides else {})}
    return tracking.connect(spec.tracking.uri, spec.tracking.experiment or spec.name, tags,
                            description=spec.description, log_weights=spec.tracking.log_weights)


@preemption.deferred()
def close_trunks(tracker: tracking.Tracker, trunk_runs: dict[str, str], loaded: LoadedSpec,
                 plan_json: dict | None) -> None:
    """At the end of a run, every trunk run it touched: its end moved to now, so that its duration spans the stage
    runs under it, and (`plan_json` given) the spec file, the plan and the resolved spec as its artifacts."""
    for run_id in trunk_runs.values():
        tracking.extend_trunk(tracker, run_id)
        if plan_json is None:
            continue
        tracking.log_file(tracker, run_id, loaded.path)
        tracking.log_json(tracker, run_id, "plan.json", plan_json)
        tracking.log_json(tracker, run_id, "spec.resolved.json",
                          [{"sweep": dict(point.values), "spec": point.spec.model_dump(mode="json")}
                           for point in loaded.points])


class RemainingColumn(TimeRemainingColumn):
    """`eta 0:03:10` on a task that asks for it (`eta=True`: the overall bar, counted in epochs), blank on others."""

    def render(self, task: Task) -> Text:
        return Text.assemble("eta ", super().render(task)) if task.fields.get("eta") else Text("")


def progress_columns() -> tuple:
    """What a stage is, its bar, epochs done, its last metrics, time taken and, overall, time left. In a narrow
    terminal (80 columns) the description and the metrics are cut short with an ellipsis, never wrapped."""
    def cut(width: int) -> Column:
        return Column(max_width=width, no_wrap=True, overflow="ellipsis")

    return (TextColumn("{task.description}", table_column=cut(25)), BarColumn(bar_width=8),
            MofNCompleteColumn(table_column=Column(no_wrap=True)), TextColumn("{task.fields[info]}",
                                                                              table_column=cut(16)),
            TimeElapsedColumn(table_column=Column(no_wrap=True)),
            RemainingColumn(compact=True, table_column=Column(no_wrap=True)))
