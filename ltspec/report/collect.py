"""From a compiled spec and its MLflow experiment to the final metrics of every stage, aggregated over seeds.

The plan, not MLflow, says what should exist. Runs are fetched with one search per experiment (tag `ltspec.role`
= "stage", status FINISHED) and indexed by their `ltspec.stage_key` tag; a stage the plan has and MLflow lacks is
absent from the index, and every aggregate counts it as missing instead of quietly averaging what is there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from ltspec.layouts.base import Stat, short_names
from ltspec.plan import Plan, compile_plan
from ltspec.spec import LoadedSpec, Spec
from ltspec.tracking import Tracker, stage_runs
from ltspec.tracking_store import environment

# A report only reads: fail in seconds on an unreachable server rather than after MLflow's 4-minute retry budget.
QUICK_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


class TrackingUnavailable(Exception):
    """The tracking store cannot be read; the message says which store and why."""


@dataclass(frozen=True)
class Point:
    """One sweep point: its column label, the values it sets, its spec, and the plan of its stages alone."""

    label: str
    values: tuple[tuple[str, Any], ...]
    spec: Spec
    plan: Plan


def sweep_points(loaded: LoadedSpec) -> tuple[Point, ...]:
    """Each sweep point compiled on its own, so a stage that two points share is counted in both."""
    names = short_names([path for path, _ in loaded.points[0].values])
    return tuple(
        Point(" ".join(f"{names[path]}={value}" for path, value in point.values), point.values, point.spec,
              compile_plan(replace(loaded, points=(point,))))
        for point in loaded.points)


@dataclass(frozen=True)
class Results:
    """The sweep points of a spec and the final metrics of its finished stage runs, by stage key."""

    points: tuple[Point, ...]
    metrics: Mapping[str, Mapping[str, float]]

    def stat(self, keys: Iterable[str], metric: str) -> Stat:
        """A metric over distinct stages; a stage without a finished run, or without the metric, is missing."""
        keys = tuple(dict.fromkeys(keys))
        return Stat(keys, tuple(self.metrics.get(key, {}).get(metric) for key in keys))


def local_store_missing(uri: str) -> bool:
    """Whether a sqlite or file store does not exist yet: reading it must not create it."""
    if uri.startswith("sqlite:///"):
        return not Path(uri.removeprefix("sqlite:///")).is_file()
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return not Path(parsed.path if parsed.scheme else uri).exists()
    return False


def fetch_stage_metrics(uri: str, experiment: str, keys: Iterable[str]) -> dict[str, dict[str, float]]:
    """Final metrics of the FINISHED stage runs whose key is in `keys`; empty when there is no such experiment.

    A missing local store stays missing: reading must not create an empty database where the user expected one.
    """
    if local_store_missing(uri):
        return {}
    wanted = set(keys)
    try:
        with environment(QUICK_HTTP):
            client = MlflowClient(tracking_uri=uri)
            found = client.get_experiment_by_name(experiment)
            runs = {} if found is None else stage_runs(Tracker(client, found.experiment_id, {}))
    except (MlflowException, SQLAlchemyError, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TrackingUnavailable(f"cannot read the MLflow tracking store at {uri}: {reason}") from None
    return {key: dict(run.data.metrics) for key, run in runs.items()
            if key in wanted and run.info.status == "FINISHED"}
