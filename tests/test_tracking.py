"""The tracking store under faults: killed while created, half-built, damaged, unreachable; stage runs finished
exactly once whatever was interrupted. Every test uses a real MLflow store (sqlite, or a closed port)."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient

from ltspec import tracking
from ltspec.kinds import dense
from ltspec.kinds.base import DataConfig, ModelConfig, Stage
from ltspec.recipe import ConstantSchedule, Recipe, Sgd
from ltspec.tracking import LOGGED, TrackingError

STAGE = Stage(dense.KIND, dense.DenseConfig(DataConfig("digits", 128, "none", 0.0), ModelConfig("mlp", 1.0), 0,
                                            Recipe(3, 0.1, Sgd(), ConstantSchedule(kind="constant"))),
              epochs=3, labels={"seed": 0})
RECORD = {"metrics": {"final_test_accuracy": 0.9, "sparsity": 0.0},
          "history": [[epoch, {"train_loss": 1.0 / epoch, "test_accuracy": 0.3 * epoch}] for epoch in (1, 2, 3)],
          "artifacts": {"layers": {"fc1": 0.5}}}

KILLED_MID_MIGRATION = """
import os, signal, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine

schema_changes = 0


@event.listens_for(Engine, "after_cursor_execute")
def kill_half_way(connection, cursor, statement, *args):
    global schema_changes
    if statement.lstrip().upper().startswith(("ALTER", "CREATE TABLE", "DROP")):
        schema_changes += 1
        if schema_changes == 100:  # of about 220: deep inside MLflow's migrations
            os.kill(os.getpid(), signal.SIGKILL)


if sys.argv[2] == "ltspec":
    from ltspec import tracking
    tracking.connect(sys.argv[1], "x", {})
else:
    from mlflow import MlflowClient
    MlflowClient(tracking_uri=sys.argv[1]).get_experiment_by_name("x")
"""


def killed_mid_migration(uri: str, opener: str, cache: Path) -> None:
    """SIGKILL a process while it migrates a new sqlite store, at a fixed schema change (deterministic); with an
    empty `cache`, ltspec migrates its store template there."""
    result = subprocess.run([sys.executable, "-c", KILLED_MID_MIGRATION, uri, opener], capture_output=True,
                            env={**os.environ, "XDG_CACHE_HOME": str(cache)})
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()[-2000:]


def uri_of(folder: Path) -> str:
    return f"sqlite:///{folder}/mlflow.db"


# Item 1: the store is created atomically; a half-built one is rebuilt when empty, reported when not


def test_a_kill_while_ltspec_creates_the_store_leaves_no_broken_database(tmp_path, monkeypatch):
    store, cache = tmp_path / "store", tmp_path / "cache"
    killed_mid_migration(uri_of(store), "ltspec", cache)
    assert not (store / "mlflow.db").exists(), "the store appears only when whole"
    assert not list((cache / "ltspec").glob("*.db")), "the template too"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    tracker = tracking.connect(uri_of(store), "spec", {})
    assert tracker.client.get_experiment(tracker.experiment_id).name == "spec"
    assert sorted(p.name for p in store.iterdir()) == [".mlflow.db.lock", "mlflow.db"], "leftovers removed"
    assert not list((cache / "ltspec").glob(".*.building")), "and the template's"


def test_new_stores_are_copies_of_one_template_pointed_at_their_own_folder(tmp_path, monkeypatch):
    """The template is migrated once per MLflow version; each store is a copy whose default experiment keeps its
    artifacts beside it, as MLflow would have made it. A damaged template is built again, not copied."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tracking.connect(uri_of(tmp_path / "a"), "spec", {})
    [template] = (tmp_path / "cache" / "ltspec").glob("mlflow-*.db")
    for name in ("b", "c"):
        client = tracking.connect(uri_of(tmp_path / name), "spec", {}).client
        assert client.get_experiment("0").artifact_location == (tmp_path / name / "mlartifacts" / "0").as_uri()
        assert client.get_experiment_by_name("spec").artifact_location == (tmp_path / name / "mlartifacts").as_uri()
        template.write_bytes(b"not a database")
    client = tracking.connect(uri_of(tmp_path / "d"), "spec", {}).client
    assert client.get_experiment_by_name("spec") is not None and template.read_bytes()[:6] == b"SQLite"


HOT_JOURNAL = """
import os, signal, sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("pragma cache_size = 1")  # spill pages to the file before the commit
connection.execute("begin immediate")
for i in range(200):
    connection.execute("insert into tags (key, value, run_uuid) values (?, ?, ?)", (f"k{i}", "v" * 500, sys.argv[2]))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_writer_killed_inside_a_transaction_leaves_a_store_that_opens_as_before(tmp_path):
    """A SIGKILL inside a write leaves a hot journal; the next run rolls it back (it once called the store
    damaged: a read-only look cannot roll back)."""
    tracker = tracking.connect(uri_of(tmp_path), "spec", {})
    run_id = tracking.start_stage(tracker, STAGE, None, [])
    result = subprocess.run([sys.executable, "-c", HOT_JOURNAL, str(tmp_path / "mlflow.db"), run_id])
    assert result.returncode == -signal.SIGKILL and (tmp_path / "mlflow.db-journal").stat().st_size > 0
    tracker = tracking.connect(uri_of(tmp_path), "spec", {})
    assert not any(key.startswith("k1") for key in tracker.client.get_run(run_id).data.tags), "rolled back"


def test_a_half_built_store_without_runs_is_moved_aside_and_rebuilt(tmp_path, caplog):
    killed_mid_migration(uri_of(tmp_path), "mlflow", tmp_path / "cache")
    half_built = (tmp_path / "mlflow.db").read_bytes()
    copy = tmp_path / "copy" / "mlflow.db"
    copy.parent.mkdir()
    copy.write_bytes(half_built)
    with pytest.raises(Exception, match="already exists|duplicate column"):
        MlflowClient(tracking_uri=f"sqlite:///{copy}").get_experiment_by_name("x")  # what MLflow alone makes of it
    tracker = tracking.connect(uri_of(tmp_path), "spec", {})
    assert tracker.client.get_experiment_by_name("spec") is not None
    [aside] = tmp_path.glob("mlflow.db.half-built-*")
    assert aside.read_bytes() == half_built, "moved aside, never deleted"
    assert "is half-built" in caplog.text and str(tmp_path / "mlflow.db") in caplog.text


def test_a_broken_schema_with_runs_is_reported_with_the_command_and_left_alone(tmp_path):
    tracker = tracking.connect(uri_of(tmp_path), "spec", {})
    tracker.client.create_run(tracker.experiment_id)
    with sqlite3.connect(tmp_path / "mlflow.db") as connection:
        connection.execute("drop table datasets")
    before = (tmp_path / "mlflow.db").read_bytes()
    with pytest.raises(TrackingError) as raised:
        tracking.connect(uri_of(tmp_path), "spec", {})
    message = str(raised.value)
    assert f"{tmp_path / 'mlflow.db'} is half-built" in message and "holds 1 runs" in message
    assert f"mv {tmp_path / 'mlflow.db'} {tmp_path / 'mlflow.db'}.broken" in message
    assert (tmp_path / "mlflow.db").read_bytes() == before


def test_a_damaged_database_is_one_paragraph_naming_the_file(tmp_path):
    tracker = tracking.connect(uri_of(tmp_path), "spec", {})
    for _ in range(20):
        tracker.client.create_run(tracker.experiment_id, tags={"ltspec.role": "stage"})
    database = tmp_path / "mlflow.db"
    data = bytearray(database.read_bytes())
    data[4096:len(data) - 4096] = os.urandom(len(data) - 8192)  # keep the header, ruin every page
    database.write_bytes(data)
    with pytest.raises(TrackingError, match=rf"the MLflow database {database} is damaged \(.*Move it aside"):
        tracking.stage_runs(tracking.connect(uri_of(tmp_path), "spec", {}))


# Item 4: a missing driver, a path too long; item 6: an unreachable server fails in seconds


@pytest.mark.parametrize("uri, words", [
    ("postgresql://user:secret@127.0.0.1:1/mlflow", "needs the database driver `psycopg"),
    ("sqlite:///" + "/tmp/" + "d" * 10_000 + "/mlflow.db", "too long"),
    ("http://127.0.0.1:{port}", "cannot reach the MLflow tracking server at http://127.0.0.1:"),
])
def test_a_store_that_cannot_be_opened_is_one_tracking_error(uri, words):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(TrackingError, match=words.replace("(", r"\(")):
        tracking.connect(uri.format(port=port), "spec", {})
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ, "quick settings only for the first contact"


# Item 2: finishing a stage's run is idempotent


def metric_rows(client: MlflowClient, run_id: str) -> list[tuple[str, int]]:
    run = client.get_run(run_id)
    return sorted((m.key, m.step) for key in run.data.metrics for m in client.get_metric_history(run_id, key))


EXPECTED_ROWS = sorted([(name, epoch) for epoch in (1, 2, 3) for name in ("train_loss", "test_accuracy")]
                       + [("final_test_accuracy", 3), ("sparsity", 3)])


@pytest.fixture
def tracker(tmp_path):
    return tracking.connect(uri_of(tmp_path), "spec", {"ltspec.spec_name": "spec"})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(logged_before=st.sets(st.sampled_from(EXPECTED_ROWS)), params_logged=st.booleans(),
       finishes=st.integers(1, 3))
def test_finishing_logs_every_metric_once_whatever_an_earlier_attempt_logged(tracker, logged_before, params_logged,
                                                                            finishes):
    """An attempt killed anywhere leaves some rows (live epochs, part of a batch) and maybe no params."""
    earlier = []
    if params_logged:
        earlier = [tracker.client.get_run(tracking.start_stage(tracker, STAGE, None, []))]
        tracker.client.set_terminated(earlier[0].info.run_id, "KILLED")
    run_id = tracking.start_stage(tracker, STAGE, None, earlier)
    values = {(name, step): value for step, row in RECORD["history"] + [[3, RECORD["metrics"]]]
              for name, value in row.items()}
    tracking.log_metrics(tracker, run_id, [(step, {name: values[name, step]}) for name, step in logged_before])
    for _ in range(finishes):
        tracking.finish_stage_run(tracker, run_id, STAGE, RECORD)
    run = tracker.client.get_run(run_id)
    assert metric_rows(tracker.client, run_id) == EXPECTED_ROWS
    assert run.info.status == "FINISHED" and run.data.tags[LOGGED] == "true"
    assert run.data.params["stage.epochs"] == "3" and run.data.params["train.lr"] == "0.1"


def test_failing_a_run_never_hides_the_error_on_its_way(tracker, tmp_path, caplog):
    run_id = tracking.start_stage(tracker, STAGE, None, [])
    artifacts = tmp_path / "mlartifacts"
    assert not artifacts.exists()
    artifacts.write_text("a file where the artifact folder should be: logging error.txt fails, as on a full disk")
    tracking.fail_stage_run(tracker, run_id, "FAILED", "Traceback: the stage's own error")
    assert tracker.client.get_run(run_id).info.status == "FAILED"
    assert f"could not log error.txt to MLflow run {run_id}" in caplog.text


def test_a_continued_run_logs_only_the_epochs_it_does_not_hold(tracker, tmp_path):
    """An attempt died after logging epochs 1-2 but before its checkpoint had them (its write was in flight): the
    next attempt trains them again from an older checkpoint and must not log them a second time, though the first
    row it logs names another metric (the checkpoint's epoch it resumed from)."""
    from ltspec.stages import Context
    from ltspec.stages.harness import RESUMED_FROM
    from ltspec.stages.mlflow_run import StageRun
    from ltspec.store import Store

    dead = tracking.start_stage(tracker, STAGE, None, [])
    rows = [(epoch, values) for epoch, values in RECORD["history"]]
    tracking.log_metrics(tracker, dead, rows[:2])
    tracker.client.set_terminated(dead, "KILLED")
    ctx = Context(store=Store(tmp_path / "store"), device=None, stages={STAGE.key: STAGE}, tracker=tracker,
                  trunk_runs={STAGE.key: None})
    run = StageRun(STAGE, ctx)
    run.start()
    assert run.run_id == dead, "the dead attempt's run is continued"
    run.log_epochs([(1, {RESUMED_FROM: 1.0})])
    run.log_epochs(rows[1:])
    logged = metric_rows(tracker.client, dead)
    assert logged == sorted([(RESUMED_FROM, 1)] + [(name, epoch) for epoch in (1, 2, 3)
                                                   for name in ("train_loss", "test_accuracy")])
