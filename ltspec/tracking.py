"""MLflow logging: one experiment per spec, one parent run per dense trunk, one nested run per stage.

Runs are found again by the stage key tag, so a re-run never logs a stage twice: a FINISHED run means the stage is
done, and an unfinished one (a crash, a Ctrl-C) is picked up and continued rather than duplicated. Finishing a
run is idempotent (`finish_stage_run` logs only what the run lacks), so a kill at any point between a stage's
record and its run's end costs nothing but the time to finish it again. Metrics go in batches: one request for many
values rather than one per value. Opening the store, and what can go wrong with it, is `tracking_store`'s.

Through a tracking server, MLflow's client retries a request that met a transient error (a 408, 429 or 5xx, a
connection reset, a timeout: 7 retries, backoff doubling from 2 s; `MLFLOW_HTTP_REQUEST_MAX_RETRIES` and
`MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR` tune it), POSTs included, even when the server had already done the work and
only its answer was lost. Every write here is safe to repeat that way: a metric batch is sent again with the same
timestamps, and the server keeps one row per (key, step, timestamp, value); tags, params and the run's status are
set to the same values again; and a run whose creation was repeated is found by the id this attempt gave it
(`ATTEMPT`) and its twin deleted. A run continued after a kill asks which epochs it already holds before it logs
any (`StageRun.log_epochs`), so an epoch trained again after a resume is never logged twice either.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote, urlencode, urlparse

from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag

from ltspec import __version__
from ltspec.kinds.base import Stage, canonical
from ltspec.tracking_store import TrackingError, creating, opening, sqlite_path, translated  # noqa: F401

log = logging.getLogger(__name__)

STAGE_KEY = "ltspec.stage_key"
ROLE = "ltspec.role"
REUSED = "ltspec.reused"  # "true" when the stage was computed elsewhere and only logged from its record here
LOGGED = "ltspec.logged"  # "true" once the run has every metric of the stage's record; written with the last
ERROR = "error.txt"  # a failed attempt's traceback, an artifact of its run
STORE_PATH = "ltspec.store_path"  # the stage's folder in the store
OVERRIDES = "ltspec.overrides"  # the command line's `key=value` overrides of the spec
ATTEMPT = "ltspec.attempt"  # a new id on every run created: a creation the HTTP client repeated made two with it
# MLflow 3's UI opens an experiment on its GenAI overview unless told it holds model training: older 3.x releases
# read this experiment tag, 3.17 reads the `workflowType` of the URL (see `runs_url`).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
BATCH = 900  # MLflow accepts at most 1000 metrics and 100 params in one log_batch


def git_commit() -> str | None:
    """The commit of the code that ran, when it runs from a git checkout."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@dataclass(frozen=True)
class Tracker:
    """A connection to one MLflow experiment, with the tags every run of this spec carries."""

    client: MlflowClient
    experiment_id: str
    tags: dict[str, str]
    log_weights: bool = False  # a train stage's final weights as an artifact of its run (`[tracking] log_weights`)


def connect(uri: str, experiment: str, tags: dict[str, str], *, description: str = "",
            log_weights: bool = False) -> Tracker:
    """Open (or create) the spec's experiment; artifacts of a sqlite store live beside the database file.

    The experiment is tagged as model training (so the UI opens on its runs) and carries the spec's description
    as its note. Any fault of the store (see `ltspec.tracking_store`) is a `TrackingError` naming the URI, within
    seconds.
    """
    with opening(uri):
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            experiment_id = _create_experiment(client, experiment, uri)
        else:
            experiment_id = found.experiment_id
        experiment_tags = {**EXPERIMENT_KIND, **({"mlflow.note.content": description} if description else {})}
        known = found.tags if found is not None else {}
        for name, value in experiment_tags.items():
            if known.get(name) != value:
                client.set_experiment_tag(experiment_id, name, value)
    commit = git_commit()
    common = {"ltspec.version": __version__, **({"ltspec.git_commit": commit} if commit else {}), **tags}
    return Tracker(client, experiment_id, common, log_weights)


def _create_experiment(client: MlflowClient, name: str, uri: str) -> str:
    """Create the experiment; artifacts of a sqlite store live beside the database file. Another process (a
    second submission, another spec sharing the server) may create it first: then it is that one."""
    from mlflow.exceptions import MlflowException

    database = sqlite_path(uri)
    location = (database.parent / "mlartifacts").as_uri() if database else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException as error:
        found = client.get_experiment_by_name(name)
        if error.error_code != "RESOURCE_ALREADY_EXISTS" or found is None:
            raise
        return found.experiment_id


def create_run(tracker: Tracker, tags: dict[str, str]):
    """A new run with `tags`, exactly one even when the HTTP client sent the creation twice (the server made the
    run, its answer was lost, the retry made another): the twin carries this attempt's id too, and is deleted."""
    attempt = uuid.uuid4().hex
    run = tracker.client.create_run(tracker.experiment_id, tags={**tags, ATTEMPT: attempt})
    if urlparse(tracker.client.tracking_uri).scheme in ("http", "https"):
        for twin in _runs(tracker, f"tags.`{ATTEMPT}` = '{attempt}'"):
            if twin.info.run_id != run.info.run_id:
                tracker.client.delete_run(twin.info.run_id)
    return run


def _runs(tracker: Tracker, filter_string: str) -> list:
    runs, token = [], None
    with translated(tracker.client.tracking_uri):
        while True:
            page = tracker.client.search_runs([tracker.experiment_id], filter_string, max_results=1000,
                                              page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs


def runs_by_stage(tracker: Tracker) -> dict[str, list]:
    """Every stage run of the experiment, grouped by stage key: one query for a whole plan (a runner's snapshot)."""
    found: dict[str, list] = {}
    for run in _runs(tracker, f"tags.`{ROLE}` = 'stage'"):
        found.setdefault(run.data.tags.get(STAGE_KEY), []).append(run)
    return found


def stage_runs(tracker: Tracker) -> dict[str, Any]:
    """Every stage's run by stage key, a FINISHED one preferred over unfinished ones."""
    return {key: finished_first(runs)[0] for key, runs in runs_by_stage(tracker).items()}


def finished_first(runs: list) -> list:
    return sorted(runs, key=lambda run: run.info.status != "FINISHED")


def runs_of_stage(tracker: Tracker, key: str) -> list:
    """Every run of one stage, asked fresh: another process, or a retried Ray task, may have made one since."""
    return _runs(tracker, f"tags.`{STAGE_KEY}` = '{key}'")


def label_tags(labels: dict) -> dict[str, str]:
    """A stage's labels (seed, sweep values, generator, arm, round, ...) as `ltspec.*` tags."""
    return {f"ltspec.{name}": str(value) for name, value in labels.items() if value is not None}


def stage_tags(stage: Stage) -> dict[str, str]:
    labels = stage.labels
    tags = {STAGE_KEY: stage.key, ROLE: "stage", "ltspec.kind": stage.kind.name,
            "mlflow.runName": stage.kind.run_name(stage)}
    tags.update(label_tags(labels))
    if labels.get("sparsity") is not None:
        tags["ltspec.sparsity_target"] = f"{labels['sparsity']:.6g}"
    return tags


def flat_params(config: dict, prefix: str = "") -> dict[str, str]:
    """A stage's config as MLflow params: nested keys dotted, values as JSON."""
    params = {}
    for name, value in config.items():
        if isinstance(value, dict) and value:
            params.update(flat_params(value, f"{prefix}{name}."))
        else:
            params[f"{prefix}{name}"] = json.dumps(value) if not isinstance(value, str) else value
    return params


def trunk_run(tracker: Tracker, trunk: Stage) -> str:
    """The parent run of a dense trunk, created once (under the store's lock) and reused by every later run."""
    with creating(tracker.client.tracking_uri):
        runs = _runs(tracker, f"tags.`{ROLE}` = 'trunk' and tags.`ltspec.trunk` = '{trunk.key}'")
        return runs[0].info.run_id if runs else _new_trunk_run(tracker, trunk)


def _new_trunk_run(tracker: Tracker, trunk: Stage) -> str:
    tags = {**tracker.tags, ROLE: "trunk", "ltspec.trunk": trunk.key, "mlflow.runName": f"trunk {trunk.describe()}",
            **label_tags(trunk.labels)}
    run = create_run(tracker, tags)
    tracker.client.log_inputs(run.info.run_id, [dataset_input(canonical(trunk.config)["data"], trunk.runtime)])
    tracker.client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def start_stage(tracker: Tracker, stage: Stage, parent_run_id: str | None, earlier: list, *,
                reused: bool = False) -> str:
    """A run for a stage about to execute (or, `reused`, to be logged from a record another run computed), given
    the stage's `earlier` runs asked fresh under its claim.

    Holding the claim, no other attempt can be running, so every unfinished run is a dead attempt's: the newest
    is continued (the checkpoint says which epochs it has), keeping its `ltspec.reused` tag, since that says
    where the stage was computed; older ones still RUNNING (a Ray task retried after its worker was lost, say)
    are marked KILLED rather than left so forever, and FAILED ones keep their status. With none, a new run. The
    run gets whichever of the stage's params it lacks: a dead attempt may have died before logging them.
    """
    unfinished = sorted((run for run in earlier if run.info.status != "FINISHED"),
                        key=lambda run: run.info.start_time, reverse=True)
    for dead in unfinished[1:]:
        if dead.info.status == "RUNNING":
            tracker.client.set_terminated(dead.info.run_id, "KILLED")
    if unfinished:
        run = unfinished[0]
        tracker.client.update_run(run.info.run_id, status="RUNNING")
    else:
        tags = {**tracker.tags, **stage_tags(stage), REUSED: str(reused).lower()}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        run = create_run(tracker, tags)
        config = canonical(stage.config)
        if "data" in config:
            tracker.client.log_inputs(run.info.run_id, [dataset_input(config["data"], stage.runtime)])
    _log_missing_params(tracker, run, stage)
    return run.info.run_id


def finish_stage_run(tracker: Tracker, run_id: str, stage: Stage, record: dict, files: Iterable[Path] = (), *,
                     logged_epochs: set[int] | None = None, tags: dict[str, str] | None = None) -> None:
    """Close a stage's run from its completion record, logging only what the run lacks.

    Safe to repeat after a kill anywhere in it or before it (between `record.json` and the run's end, say): no
    metric row is ever logged twice. It logs the params the run lacks; the record's history and final metrics
    (at step `stage.epochs`), only the (name, step) pairs the run does not have yet, with the tag
    `ltspec.logged = true` in the same (last) batch, so that a run with the tag is known whole and not asked
    again; the record's small JSON artifacts and `files` (each overwrites itself); it deletes the `error.txt` an
    earlier failed attempt left; and marks the run FINISHED. `logged_epochs`: the caller created the run and knows
    every epoch of the history it logged to it, so the run needs the other epochs and the final metrics, and
    nothing needs asking (no `get_run`, no artifact listing): the run is closed by one metric batch, its artifacts
    and its status. `tags` go with the last batch.
    """
    client = tracker.client
    closing = {**(tags or {}), LOGGED: "true"}
    if logged_epochs is not None:  # this attempt made the run: its params are in, and no earlier attempt left an error.txt
        rows = [(int(epoch), values) for epoch, values in record["history"] if int(epoch) not in logged_epochs]
        log_metrics(tracker, run_id, [*rows, (stage.epochs, record["metrics"])], tags=closing)
        _log_artifacts(tracker, run_id, record, files)
        client.set_terminated(run_id, "FINISHED")
        return
    run = client.get_run(run_id)
    _log_missing_params(tracker, run, stage)
    if run.data.tags.get(LOGGED) != "true":
        rows = [(int(step), values) for step, values in record["history"]] + [(stage.epochs, record["metrics"])]
        log_metrics(tracker, run_id, missing(tracker, run, rows), tags=closing)
    _log_artifacts(tracker, run_id, record, files)
    _delete_stale_error(tracker, run)
    client.set_terminated(run_id, "FINISHED")


def missing(tracker: Tracker, run, rows: list[tuple[int, dict[str, float]]]) -> list[tuple[int, dict[str, float]]]:
    """The (step, {name: value}) rows cut to the values the run does not hold yet at their step."""
    return without(rows, held(tracker, run, {name for _, row in rows for name in row}))


def held(tracker: Tracker, run, names: set[str]) -> set[tuple[str, int]]:
    """The (metric, step) pairs the run holds of `names`: one request per name the run has at all."""
    return {(m.key, m.step) for name in names & set(run.data.metrics)
            for m in tracker.client.get_metric_history(run.info.run_id, name)}


def without(rows: list[tuple[int, dict[str, float]]], present: set[tuple[str, int]]) -> list:
    kept = [(step, {name: value for name, value in row.items() if (name, step) not in present}) for step, row in rows]
    return [(step, row) for step, row in kept if row]


def _log_artifacts(tracker: Tracker, run_id: str, record: dict, files: Iterable[Path]) -> None:
    for name, value in record["artifacts"].items():
        log_json(tracker, run_id, f"{name}.json", value)
    for path in files:
        log_file(tracker, run_id, path)


def fail_stage_run(tracker: Tracker, run_id: str, status: str, error_text: str | None = None) -> None:
    """Close a stage's run as FAILED or KILLED, with the traceback as its `error.txt`.

    It runs while another error is on its way, which it must not hide: on a full disk or a lost server, logging
    fails too. So it never raises; each thing it could not do is one warning line.
    """
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    steps = {f"log {ERROR} to": lambda: tracker.client.log_text(run_id, error_text, ERROR),
             f"mark {status}": lambda: tracker.client.set_terminated(run_id, status)}
    for what, step in steps.items():
        if error_text is None and what.startswith("log"):
            continue
        try:
            step()
        except (MlflowException, SQLAlchemyError, OSError) as error:
            log.warning("could not %s MLflow run %s: %s", what, run_id, " ".join(str(error).split())[:300])


def _log_missing_params(tracker: Tracker, run, stage: Stage) -> None:
    flat = flat_params(canonical(stage.config))
    wanted = {**{name: value[:6000] for name, value in flat.items()}, "stage.epochs": str(stage.epochs)}
    params = [Param(k, v) for k, v in wanted.items() if k not in run.data.params]
    for start in range(0, len(params), 100):
        tracker.client.log_batch(run.info.run_id, params=params[start:start + 100])


def _delete_stale_error(tracker: Tracker, run) -> None:
    """Delete the traceback of an earlier failed attempt from a run that now finishes; where the artifact store
    cannot delete, say so in one line rather than fail the stage."""
    if not any(item.path == ERROR for item in tracker.client.list_artifacts(run.info.run_id)):
        return
    failure = delete_artifacts(run, [ERROR])
    if failure:
        log.warning("run %s finished, but its stale %s could not be deleted: %s", run.info.run_id, ERROR, failure)


def delete_artifacts(run, paths: Iterable[str]) -> str | None:
    """Delete these artifacts of a run; why not, where its artifact store cannot delete (None when it did)."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    try:
        repository = get_artifact_repository(run.info.artifact_uri)
        for path in paths:
            repository.delete_artifacts(path)
    except (NotImplementedError, MlflowException, OSError) as error:
        return str(error) or type(error).__name__
    return None


def log_metrics(tracker: Tracker, run_id: str, rows: Iterable[tuple[int, dict[str, float]]],
                tags: dict[str, str] | None = None) -> None:
    """Log (step, {name: value}) rows in as few batches as MLflow allows, and any tags with the last batch: a
    tag that says the metrics are logged (`ltspec.logged`) arrives in the same write as the last of them."""
    now = int(time.time() * 1000)
    metrics = [Metric(name, float(value), now, step) for step, values in rows for name, value in values.items()]
    run_tags = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    last = max(len(metrics) - 1, 0) // BATCH * BATCH
    for start in range(0, last + 1, BATCH):
        tracker.client.log_batch(run_id, metrics=metrics[start:start + BATCH], tags=run_tags if start == last else [])


def log_json(tracker: Tracker, run_id: str, name: str, obj: Any) -> None:
    tracker.client.log_text(run_id, json.dumps(obj, indent=2, sort_keys=True, default=str), name)


def log_file(tracker: Tracker, run_id: str, path: Path, folder: str | None = None) -> None:
    tracker.client.log_artifact(run_id, str(path), folder)


def dataset_input(data: dict, runtime: dict) -> DatasetInput:
    """The stage's dataset as an MLflow input (the runs table's Dataset column): its name, where it is read from,
    and a digest of the settings that fix its train/validation/test split."""
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8]
    source = json.dumps({"root": str(runtime.get("root", "")), "dataset": data["dataset"]})
    return DatasetInput(Dataset(data["dataset"], digest, "local", source),
                        [InputTag("mlflow.data.context", "training")])


def extend_trunk(tracker: Tracker, trunk_run_id: str) -> None:
    """Move a trunk's end to now, so that its duration spans the stage runs under it."""
    tracker.client.set_terminated(trunk_run_id, "FINISHED", end_time=int(time.time() * 1000))


def runs_url(base: str, experiment_id: str, search: str = "") -> str:
    """The experiment's runs table in the MLflow UI: as model training (not the GenAI overview), sorted by run
    name (which also lists the stage runs flat rather than folded under their trunks), filtered by an MLflow
    search expression."""
    query = {"workflowType": "machine_learning", "orderByKey": "attributes.run_name", "orderByAsc": "true",
             **({"searchFilter": search} if search else {})}
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{urlencode(query, quote_via=quote)}"


def end_stage(tracker: Tracker, run_id: str, status: str = "FINISHED") -> None:
    """Close a stage run as FINISHED, FAILED or KILLED."""
    tracker.client.set_terminated(run_id, status)
