"""What both runners share: the run summary, the device and MLflow set-up, the spec and plan artifacts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from ltspec import tracking
from ltspec.plan import Plan
from ltspec.spec import LoadedSpec, Spec


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


def progress_columns() -> tuple:
    return (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn())
