"""The Ray runner against the local one on a one-node Ray: the same records, the same failures, nothing run twice.

One spec, run by each runner in its own folder, with a stage of every kind (the analyses' too: an interpolation,
an arm's copy and its instability, a mask comparison, a shuffled mask). Its `boom` arm trains at lr 1e6, so its
loss turns NaN in the first epoch: a real stage failure, with dependents (the R_p stage that measures `boom`) and
independent siblings. Both runs use one CPU thread (the spec's `resources.cpus = 1`, which the Ray runner turns
into torch's thread count), since the thread count changes float sums in the last bits. And the private Ray cluster
that a run without an address starts: on the loopback interface only, and gone with its driver however the driver
ends.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import torch
from rich.console import Console

from conftest import write_tiny_spec
from ltspec import tracking
from ltspec.plan import compile_plan
from ltspec.spec import load_spec
from ltspec.store import Store
from ltspec.runners.common import connect
from ltspec.runners.local import run_local
from ltspec.runners.common import absolute_uri
from ltspec.runners.ray import ClusterError, check_cluster, gpus_per_stage, run_ray

# The tiny spec with one IMP round, its shuffled control, the analyses, and a `boom` arm whose loss turns NaN in its
# first epoch
RAY_SPEC = {
    "name": "ray-runner-test", "batch_size": 64, "augmentation": "none",
    "train": 'optimizer = { kind = "sgd", momentum = 0.9, weight_decay = 5e-4 }\nschedule = { kind = "constant" }',
    "masks": '[masks.imp]\nkind = "imp"\nrate = 0.5\nrounds = 1\n\n[masks.shuffled]\nkind = "shuffle"\nof = "imp"\n',
    "arms": 'lottery = { start = "init" }\nfinetune = { start = "trained" }\nboom = { start = "init", lr = 1e6 }',
    "measure": 'p = [0.2]\npairs = [["init", "trained"], ["init*mask", "finetune"], ["init*mask", "boom"]]\n\n'
               '[interpolation]\npairs = [["lottery", "finetune"]]\npoints = 3\n\n[instability]\narms = ["lottery"]\n\n'
               '[mask_overlap]\ncompare = ["generators"]',
    "resources": "[resources]\ncpus = 1\n", "checkpoint_seconds": 300,
}


# The private Ray cluster of a run without an address: loopback only, gone with its driver however it ends (first
# in this module, before its own Ray starts: one Ray at a time)

PRIVATE_CLUSTER = """
import json, os, time
import ray
import psutil  # after ray, which carries a copy
from ltspec.runners.ray import _connected, _descendants


@ray.remote
def worker_pid():
    return os.getpid()


with _connected(None):
    ray.get(worker_pid.remote())
    driver = psutil.Process()
    listening = sorted({(process.name(), connection.laddr.ip) for process in [driver, *driver.children(recursive=True)]
                        for connection in process.net_connections("inet") if connection.status == psutil.CONN_LISTEN})
    print(json.dumps({"listening": listening, "cluster": _descendants(os.getpid())}), flush=True)
    time.sleep(600)
"""


def alive(process: str) -> bool:
    """Whether `pid:start-time` (as `_descendants` gives it) still runs: not gone, not a zombie, not a reused pid."""
    pid, started = process.split(":")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == started and fields[0] != "Z"


@pytest.mark.slow
def test_the_private_ray_cluster_listens_on_loopback_only_and_no_process_outlives_a_sigkilled_driver(tmp_path):
    """One private cluster for both halves: what it listens on while the run holds it, and that a SIGKILL of the
    driver (no handler runs) leaves none of its processes. A driver that ends normally leaves the same way: through
    the reaper that `_connected` starts, which kills what is left when the driver's end of its pipe closes."""
    environment = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}
    driver = subprocess.Popen([sys.executable, "-c", PRIVATE_CLUSTER], stdout=subprocess.PIPE, text=True, cwd=tmp_path,
                              env=environment)
    found = json.loads(driver.stdout.readline() or "{}")
    driver.kill()
    driver.wait()
    cluster = found.get("cluster", [])
    for _ in range(60):  # half a minute at most; without the reaper, Ray's agents stay about 60 s
        if not any(alive(process) for process in cluster):
            break
        time.sleep(0.5)
    left = [process for process in cluster if alive(process)]
    for process in left:
        os.kill(int(process.split(":")[0]), signal.SIGKILL)
    assert len(cluster) >= 4, f"GCS, raylet, agents and a worker: {found}"
    assert {"gcs_server", "raylet"} <= {name for name, _ in found["listening"]}, found
    assert {ip for _, ip in found["listening"]} <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}, found["listening"]
    assert left == [], "every process of the private cluster ends with its driver"


def _load(folder: Path):
    loaded = load_spec(write_tiny_spec(folder, **RAY_SPEC))
    return loaded, compile_plan(loaded)


def _quiet() -> Console:
    return Console(file=io.StringIO())


@ray.remote(num_cpus=1)
def _warm_up() -> None:
    import ltspec.runners.ray  # noqa: F401  (what a stage task imports first: torch, MLflow, the stages)


@pytest.fixture(scope="module")
def cluster():
    """A local Ray of two CPUs, whose two workers import the runner while this process runs the local one."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never a cluster found here
    warming = [_warm_up.remote() for _ in range(2)]
    yield
    ray.get(warming)
    ray.shutdown()


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """(plan, local summary, local store, ray loaded spec, ray summary, ray store) for the same spec."""
    local_folder, ray_folder = tmp_path_factory.mktemp("local"), tmp_path_factory.mktemp("ray")
    loaded, plan = _load(local_folder)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = run_local(loaded, plan, device="cpu", console=_quiet())
    finally:
        torch.set_num_threads(threads)
    ray_loaded, ray_plan = _load(ray_folder)
    assert [stage.key for stage in ray_plan.stages] == [stage.key for stage in plan.stages]
    on_ray = run_ray(ray_loaded, ray_plan, console=_quiet(), plan_json={"name": ray_plan.name})
    return plan, local, Store(local_folder / "store"), ray_loaded, on_ray, Store(ray_folder / "store")


@pytest.mark.slow
def test_same_records_as_the_local_runner(runs):
    plan, local, local_store, _, on_ray, ray_store = runs
    assert on_ray.ran == local.ran and on_ray.failed == local.failed and on_ray.blocked == local.blocked
    for stage in plan.stages:
        mine, theirs = ray_store.record(stage.key), local_store.record(stage.key)
        assert (mine is None) == (theirs is None), stage.describe()
        if mine is not None:
            assert mine["metrics"] == theirs["metrics"], stage.describe()
            assert mine["history"] == theirs["history"], stage.describe()


@pytest.mark.slow
def test_a_failed_stage_blocks_its_dependents_and_nothing_else(runs):
    plan, _, _, _, on_ray, ray_store = runs
    boom = {stage.key for stage in plan.stages if stage.labels.get("arm") == "boom"}
    assert len(boom) == 2 and set(on_ray.failed) == boom  # on the IMP mask and on its shuffle
    assert all("nan" in message for message in on_ray.failed.values())
    dependents = {stage.key for stage in plan.stages if boom & set(stage.parents)}
    assert dependents and set(on_ray.blocked) == dependents
    assert set(on_ray.ran) == {stage.key for stage in plan.stages} - boom - dependents
    assert all(ray_store.is_complete(key) for key in on_ray.ran) and not on_ray.ok


@pytest.mark.slow
def test_every_stage_is_logged_to_mlflow_with_the_plan_on_its_trunk(runs):
    plan, _, _, ray_loaded, on_ray, _ = runs
    tracker = connect(ray_loaded, plan)
    logged = tracking.stage_runs(tracker)
    assert {key for key, run in logged.items() if run.info.status == "FINISHED"} == set(on_ray.ran)
    assert {key for key, run in logged.items() if run.info.status == "FAILED"} == set(on_ray.failed)
    trunk_run = tracking.trunk_run(tracker, plan.trunks[0])
    assert {artifact.path for artifact in tracker.client.list_artifacts(trunk_run)} >= {"plan.json", "spec.toml"}


@pytest.mark.slow
def test_a_rerun_trains_nothing_again(runs):
    _, _, _, ray_loaded, first, ray_store = runs
    records = {key: ray_store.record(key) for key in first.ran}
    again = run_ray(ray_loaded, compile_plan(ray_loaded), console=_quiet())
    assert again.ran == [] and again.done == first.ran
    assert again.failed == first.failed and again.blocked == first.blocked
    assert {key: ray_store.record(key) for key in first.ran} == records


TWO_NODES = [{"NodeID": "a", "Alive": True}, {"NodeID": "b", "Alive": True}]


@pytest.mark.parametrize("uri, root, named", [
    ("sqlite:///mlflow.db", "/shared/store", "sqlite:///mlflow.db"),
    ("sqlite:////shared/mlflow.db", "/shared/store", "sqlite:////shared/mlflow.db"),
    ("file:///shared/mlruns", "/shared/store", "file:///shared/mlruns"),
    ("mlruns", "/shared/store", "`mlruns`"),
    ("http://head:5000", "results", "`results` is a relative path"),
])
def test_a_multi_node_cluster_needs_a_shared_store_and_an_mlflow_server(uri, root, named):
    with pytest.raises(ClusterError, match="2-node") as refusal:
        check_cluster(TWO_NODES, uri, root)
    assert named in str(refusal.value) and "mlflow server" in str(refusal.value)


def test_one_alive_node_runs_with_local_paths_and_many_with_shared_ones():
    """`check_cluster` refuses by raising: a dead node does not count, so the local paths it accepts beside one are
    refused once that node is alive; a tracking server and an absolute store root are accepted on many nodes."""
    dead = {"NodeID": "c", "Alive": False}
    check_cluster([TWO_NODES[0], dead], "sqlite:///mlflow.db", "results")
    with pytest.raises(ClusterError, match="refusing to run on a 2-node Ray cluster"):
        check_cluster([TWO_NODES[0], {**dead, "Alive": True}], "sqlite:///mlflow.db", "results")
    check_cluster(TWO_NODES, "http://head:5000", "/shared/store")
    check_cluster(TWO_NODES, "postgresql://head/mlflow", "/shared/store")


def test_gpu_share_small_nets_pack_large_nets_take_a_gpu_none_without_gpus():
    assert gpus_per_stage("resnet20", None, cluster_gpus=4) == 0.25
    assert gpus_per_stage("mlp", None, cluster_gpus=1) == 0.25
    assert gpus_per_stage("vgg16", None, cluster_gpus=4) == 1.0
    assert gpus_per_stage("vgg16", 0.5, cluster_gpus=4) == 0.5
    assert gpus_per_stage("vgg16", 0.5, cluster_gpus=0) == 0.0
    assert gpus_per_stage("resnet20", None, cluster_gpus=0) == 0.0


@pytest.mark.slow
def test_relative_tracking_paths_are_resolved_against_the_driver_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert absolute_uri("sqlite:////abs/mlflow.db") == "sqlite:////abs/mlflow.db"
    assert absolute_uri("mlruns") == str(tmp_path.resolve() / "mlruns")
    assert absolute_uri("http://head:5000") == "http://head:5000"
