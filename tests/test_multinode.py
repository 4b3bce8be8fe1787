"""Two Ray nodes on one machine (`ray.cluster_utils.Cluster`), an MLflow server on 127.0.0.1 and the store in one
folder both nodes see by the same absolute path: what a real multi-node cluster with NFS and a tracking server
looks like to ltspec. The stages spread over both nodes, and the report equals the local runner's; a tracking URI
that is a file or a relative store is refused before anything runs."""

import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import ray
import torch
from mlflow import MlflowClient
from ray.cluster_utils import Cluster
from rich.console import Console

from conftest import (assert_rerun_resumed, checkpoint_epoch, children_get_default_signals, default_signals, ltspec,
                      write_tiny_spec)
from ltspec.plan import compile_plan
from ltspec.report import write_report
from ltspec.runners.local import run_local
from ltspec.runners.ray import NODE, ClusterError, check_cluster, run_ray
from ltspec.spec import load_spec
from ltspec.store import Store
from ltspec.tracking import STAGE_KEY

pytestmark = pytest.mark.slow

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_process(tmp_path_factory):
    """`mlflow server` on 127.0.0.1 over its own sqlite store, started (it answers seconds later: `mlflow_server`
    waits), killed (its whole session) at the end. Yields (the process, its URI, its log)."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    with open(folder / "server.log", "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                                   f"sqlite:///{folder}/mlflow.db", "--host", "127.0.0.1", "--port", str(port),
                                   "--workers", "1"], cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        yield server, f"http://127.0.0.1:{port}", folder / "server.log"
    finally:
        os.killpg(server.pid, signal.SIGKILL)  # nothing of it is kept, and SIGTERM takes it seconds
        server.wait()


@ray.remote(num_cpus=1)
def _warm_up() -> None:
    import ltspec.runners.ray  # noqa: F401  (what a stage task imports first: torch, MLflow, the stages)


@pytest.fixture(scope="module")
def two_nodes(mlflow_process):
    """A head and a second node of one CPU each, this process their driver; they start while the MLflow server
    does (each takes seconds), and a worker on each node imports the runner while the tests prepare."""
    with children_get_default_signals():  # pytest run in the background ignores SIGINT: the workers must not
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    warming = [_warm_up.remote() for _ in range(2)]
    try:
        yield cluster
    finally:
        ray.get(warming)
        ray.shutdown()
        for node in list(cluster.worker_nodes):  # nothing to save: no grace period for its processes
            cluster.remove_node(node, allow_graceful=False)
        cluster.shutdown()


@pytest.fixture(scope="module")
def mlflow_server(mlflow_process) -> str:
    """The MLflow server's URI, once it answers."""
    server, uri, log = mlflow_process
    for _ in range(1200):
        assert server.poll() is None, log.read_text()
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=1)
            return uri
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the MLflow server did not answer within two minutes: {log.read_text()}")


def quiet() -> Console:
    return Console(file=io.StringIO())


def reports(spec: Path, out: Path) -> dict[str, str]:
    assert write_report(load_spec(spec), formats=["csv", "md"], out_dir=out, console=quiet()) == 0
    return {path.name: path.read_text() for path in sorted(out.iterdir()) if path.suffix in (".csv", ".md")}


DENSE_EPOCHS = 60  # an epoch on the digits takes milliseconds: long dense runs, which a signal finds still training


def spec_in(folder: Path, uri: str, *, root: str | None = None, name: str = "two-nodes",
            checkpoint_seconds: float = 300) -> Path:
    """The tiny spec with two seeds (a dense run for each node), tracked at `uri`, its store in `folder` (by an
    absolute path, a folder every node sees) unless `root` says; the checkpoint interval is no part of a stage's
    key or record."""
    return write_tiny_spec(folder, name=name, seeds="[0, 1]", epochs=DENSE_EPOCHS, train="",
                           masks='[masks.oneshot]\nkind = "oneshot"\nsparsities = [0.5]\n',
                           arms='lottery = { start = "init", epochs = 1 }\nreinit = { start = "reinit", epochs = 1 }',
                           measure='p = [0.2]\npairs = [["init", "trained"], ["init*mask", "lottery"]]',
                           resources="[resources]\ncpus = 1\n", uri=uri, root=root or (folder / "store").as_posix(),
                           checkpoint_seconds=checkpoint_seconds)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The spec run by the local runner, with as many threads as a Ray task of `cpus = 1`: what every run on the two
    nodes must equal (stage keys and records do not depend on the spec's name or folders)."""
    folder = tmp_path_factory.mktemp("alone")
    spec = spec_in(folder, f"sqlite:///{folder.as_posix()}/mlflow.db")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loaded = load_spec(spec)
        assert run_local(loaded, compile_plan(loaded), device="cpu", console=quiet()).ok
    finally:
        torch.set_num_threads(threads)
    return spec


def final_metrics(spec: Path) -> dict:
    loaded = load_spec(spec)
    store = Store(Path(loaded.spec.storage.root))
    return {stage.key: store.record(stage.key)["metrics"] for stage in compile_plan(loaded).stages}


def stage_runs(uri: str, experiment: str) -> list:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(experiment).experiment_id
    return client.search_runs([experiment], "tags.`ltspec.role` = 'stage'")


def test_stages_spread_over_both_nodes_and_the_report_equals_the_local_runners(two_nodes, reference, mlflow_server,
                                                                               tmp_path):
    spec = spec_in(tmp_path, mlflow_server)
    loaded = load_spec(spec)
    plan = compile_plan(loaded)
    summary = run_ray(loaded, plan, console=quiet())
    assert summary.ok and sorted(summary.ran) == sorted(stage.key for stage in plan.stages)

    runs = stage_runs(mlflow_server, "two-nodes")
    assert sorted(run.data.tags[STAGE_KEY] for run in runs) == sorted(stage.key for stage in plan.stages)
    nodes = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert len(nodes) == 2 and {run.data.tags[NODE] for run in runs} == nodes, "the stages ran on one node only"

    assert final_metrics(spec) == final_metrics(reference)
    assert reports(spec, tmp_path / "report-ray") == reports(reference, tmp_path / "report-local")


def test_a_tracking_file_or_a_relative_store_is_refused_on_two_nodes(two_nodes, mlflow_server, tmp_path):
    nodes = ray.nodes()
    with pytest.raises(ClusterError, match="sqlite:///.*is a file on this machine"):
        check_cluster(nodes, f"sqlite:///{tmp_path}/mlflow.db", str(tmp_path / "store"))
    with pytest.raises(ClusterError, match="`store` is a relative path"):
        check_cluster(nodes, mlflow_server, "store")
    check_cluster(nodes, mlflow_server, str(tmp_path / "store"))

    spec = spec_in(tmp_path, "sqlite:///mlflow.db", root="store")
    result = ltspec("run", str(spec), "--runner", "ray", "--address", two_nodes.address, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "refusing to run on a 2-node Ray cluster" in message and "`store` is a relative path" in message
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("record.json"))


def test_sigterm_cancels_the_tasks_on_both_nodes_and_the_rerun_resumes_to_identical_results(two_nodes, reference,
                                                                                           mlflow_server, tmp_path):
    """The driver, `ltspec run --runner ray` as a scheduler runs it, is sent SIGTERM mid-training: once the first
    epoch of both dense stages is checkpointed (every epoch is), while each node trains its seed's dense run. The
    rerun is the same runner in this process (the driver of the cluster), which resumes what the stopped one left."""
    spec = spec_in(tmp_path, mlflow_server, name="stopped", checkpoint_seconds=0)
    plan = compile_plan(load_spec(spec))
    command = default_signals([sys.executable, "-m", "ltspec", "run", str(spec), "--runner", "ray", "--address",
                               two_nodes.address])
    driver = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = Store(tmp_path / "store")
    checkpoints = {trunk.key: store.stage_dir(trunk.key) / "checkpoint.pt" for trunk in plan.trunks}
    for _ in range(2400):
        if all(checkpoint.exists() for checkpoint in checkpoints.values()) or driver.poll() is not None:
            break
        time.sleep(0.05)
    assert all(checkpoint.exists() for checkpoint in checkpoints.values()), driver.communicate()
    driver.send_signal(signal.SIGTERM)
    stderr = driver.communicate(timeout=120)[1]
    assert driver.returncode == 143, stderr
    assert [line for line in stderr.splitlines() if "interrupted" in line] == [
        next(line for line in stderr.splitlines() if line.startswith("interrupted: by SIGTERM"))], stderr
    assert "Traceback" not in stderr
    stopped = stage_runs(mlflow_server, "stopped")
    assert "RUNNING" not in [run.info.status for run in stopped], [run.info.status for run in stopped]
    killed = {run.data.tags[STAGE_KEY]: run.data.tags[NODE] for run in stopped if run.info.status == "KILLED"}
    assert set(killed) == {trunk.key for trunk in plan.trunks} and len(set(killed.values())) == 2, killed

    resumed_from, rerun_started = {key: checkpoint_epoch(path) for key, path in checkpoints.items()}, time.time()
    resumed = run_ray(load_spec(spec), plan, console=quiet())
    assert resumed.ok
    for key, epoch in resumed_from.items():  # each dense run trains on from its checkpoint's epoch
        assert_rerun_resumed(mlflow_server, "stopped", key, DENSE_EPOCHS, rerun_started, epoch)
    assert final_metrics(spec) == final_metrics(reference)
    runs = stage_runs(mlflow_server, "stopped")
    assert sorted(run.data.tags[STAGE_KEY] for run in runs) == sorted(stage.key for stage in plan.stages)
    assert {run.info.status for run in runs} == {"FINISHED"}
