"""What both runners share: the run summary, the device and MLflow set-up, the spec and plan artifacts."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse

import torch
from mlflow import MlflowClient
from rich.progress import BarColumn, MofNCompleteColumn, Task, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column
from rich.text import Text

from ltspec import preemption, tracking
from ltspec.plan import Plan, Stage
from ltspec.runners.slots import gpu_indices, gpu_share
from ltspec.spec import LoadedSpec, Spec
from ltspec.store import Store

CUBLAS_WORKSPACE = "CUBLAS_WORKSPACE_CONFIG"  # cuBLAS's workspace setting, which its deterministic mode needs
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
    deterministic: bool = False  # `resources.deterministic`: see `reproducible`

    @classmethod
    def of(cls, store: Store, tracker: tracking.Tracker | None, threads: int, deterministic: bool) -> Workspace:
        if tracker is None:
            return cls(str(store.root.resolve()), None, None, {}, threads, deterministic=deterministic)
        return cls(str(store.root.resolve()), absolute_uri(tracker.client.tracking_uri), tracker.experiment_id,
                   tracker.tags, threads, tracker.log_weights, deterministic)

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


def gpus_per_stage(arch: str, share: float | None, cluster_gpus: float) -> float:
    """The GPUs one stage asks for on a cluster (Ray, Slurm): its share (`ltspec.runners.slots.gpu_share`, as the
    local runner packs them); none on a cluster without GPUs, where any request would leave every task waiting."""
    return gpu_share(arch, share) if cluster_gpus > 0 else 0.0


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


@contextmanager
def reproducible(deterministic: bool) -> Iterator[None]:
    """The GPU settings of every stage, in both runners, for a block, then restored: cuDNN's benchmark mode off,
    and where `deterministic` (`resources.deterministic`) torch's deterministic algorithms on.

    Benchmark mode picks each convolution's algorithm by timing the candidates, and the timings depend on what else
    runs on the GPU, so two slots of a packed GPU could pick differently; off, cuDNN picks by its heuristics, the
    same choice on the same GPU model. That choice may still be an algorithm that adds with atomics (some
    convolution backward passes), whose sums differ in the last bits from run to run: deterministic algorithms
    rule those out (cuDNN's deterministic flag, cuBLAS's fixed workspace), so that a stage's results are
    bit-identical from run to run and whichever slot ran it. An operation with no deterministic version warns
    rather than fails (`warn_only`): the nets' adaptive average pool has none on CUDA.
    """
    cudnn = torch.backends.cudnn
    before = (cudnn.benchmark, cudnn.deterministic, torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled(), os.environ.get(CUBLAS_WORKSPACE))
    cudnn.benchmark = False
    if deterministic:  # only then: torch.use_deterministic_algorithms imports torch._inductor (seconds)
        os.environ.setdefault(CUBLAS_WORKSPACE, ":4096:8")  # read when cuBLAS starts: older torch needs it
        cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        cudnn.benchmark = before[0]
        if deterministic:
            cudnn.deterministic = before[1]
            torch.use_deterministic_algorithms(before[2], warn_only=before[3])
            if before[4] is None:
                os.environ.pop(CUBLAS_WORKSPACE, None)


def architecture(stage: Stage, stages: dict[str, Stage]) -> str:
    """The architecture a stage trains or measures: its trunk's."""
    return stages[stage.trunk].config.model.arch


def resolve_device(name: str, gpus: Sequence[int] | None = None) -> torch.device:
    """The device `--device` names (`auto`: CUDA where torch sees it), checked against `--gpus`."""
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
    else:
        device = torch.device(name)
    gpu_indices(str(device), gpus, torch.cuda.device_count() if device.type == "cuda" else 0)
    return device


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
