"""The Ray runner against the local one on a one-node Ray: the same records, the same failures, nothing run twice.

One spec, run by each runner in its own folder, with a stage of every kind (the analyses' too: an interpolation,
an arm's copy and its instability, a mask comparison, a shuffled mask). Its `boom` arm trains at lr 1e6, so its
loss turns NaN in the first epoch: a real stage failure, with dependents (the R_p stage that measures `boom`) and
independent siblings. Both runs use one CPU thread (the spec's `resources.cpus = 1`, which the Ray runner turns
into torch's thread count), since the thread count changes float sums in the last bits.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import ray
import torch
from rich.console import Console

from conftest import write_spec
from ltspec import tracking
from ltspec.plan import compile_plan
from ltspec.spec import load_spec
from ltspec.store import Store
from ltspec.runners.common import connect
from ltspec.runners.local import run_local
from ltspec.runners.common import absolute_uri
from ltspec.runners.ray import ClusterError, check_cluster, gpus_per_stage, run_ray

SPEC = """
name = "ray-runner-test"
seeds = [0]

[data]
dataset = "digits"
batch_size = 64
augmentation = "none"

[model]
arch = "mlp"

[train]
epochs = 2
lr = 0.05
optimizer = {{ kind = "sgd", momentum = 0.9, weight_decay = 5e-4 }}
schedule = {{ kind = "constant" }}

[masks.imp]
kind = "imp"
rate = 0.5
rounds = 1

[arms]
lottery = {{ start = "init" }}
finetune = {{ start = "trained" }}
boom = {{ start = "init", lr = 1e6 }}

[masks.shuffled]
kind = "shuffle"
of = "imp"

[measure]
p = [0.2]
pairs = [["init", "trained"], ["init*mask", "finetune"], ["init*mask", "boom"]]

[interpolation]
pairs = [["lottery", "finetune"]]
points = 3

[instability]
arms = ["lottery"]

[mask_overlap]
compare = ["generators"]

[resources]
cpus = 1

[tracking]
uri = "sqlite:///{folder}/mlflow.db"

[storage]
root = "{folder}/store"
"""


def _load(folder: Path):
    loaded = load_spec(write_spec(folder, SPEC))
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
    dead = {"NodeID": "c", "Alive": False}
    check_cluster([TWO_NODES[0], dead], "sqlite:///mlflow.db", "results")
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
