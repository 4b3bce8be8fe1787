"""The local runner's worker processes: stages side by side give exactly the one-at-a-time results, a dead worker
fails only its stage, and no worker outlives its runner."""

import multiprocessing
import os
import re
import signal
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import assert_rerun_resumed, checkpoint_epoch, write_tiny_spec
from test_run import appears, cli, processes_in
from ltspec.plan import compile_plan
from ltspec.runners.local import run_local
from ltspec.runners.workers import _die_with_parent
from ltspec.spec import load_spec
from ltspec.store import Store
from ltspec.tracking import STAGE_KEY


def outcome(folder: Path, plan) -> dict:
    """Every stage's record (metrics, history, artifacts) and mask tensors, as the store holds them."""
    store = Store(folder / "store")
    found = {}
    for stage in plan.stages:
        record = store.record(stage.key)
        found[stage.key] = {name: record[name] for name in ("metrics", "history", "artifacts")}
        if stage.kind.name == "mask":
            found[stage.key]["mask"] = {name: tensor.tolist() for name, tensor in
                                        store.read_tensors(stage.key, "mask").items()}
    return found


@pytest.mark.slow
def test_two_workers_give_the_records_masks_and_runs_of_one_at_a_time(tmp_path):
    results = {}
    for workers in (1, 2):
        folder = tmp_path / f"workers{workers}"
        folder.mkdir()
        loaded = load_spec(write_tiny_spec(folder))
        plan = compile_plan(loaded)
        summary = run_local(loaded, plan, device="cpu", workers=workers)
        assert summary.ok and sorted(summary.ran) == sorted(stage.key for stage in plan.stages)
        results[workers] = outcome(folder, plan)
        client = MlflowClient(tracking_uri=f"sqlite:///{folder}/mlflow.db")
        experiment = client.get_experiment_by_name("tiny-run").experiment_id
        runs = client.search_runs([experiment], "tags.`ltspec.role` = 'stage'")
        assert sorted(run.data.tags[STAGE_KEY] for run in runs) == sorted(stage.key for stage in plan.stages)
        assert {run.info.status for run in runs} == {"FINISHED"}
        trunks = client.search_runs([experiment], "tags.`ltspec.role` = 'trunk'")
        assert {run.data.tags["mlflow.parentRunId"] for run in runs} == {trunk.info.run_id for trunk in trunks}
    assert results[2] == results[1]


@pytest.mark.slow
def test_a_dead_worker_fails_only_its_stage_and_the_rerun_resumes_it(tmp_path):
    spec = write_tiny_spec(tmp_path, epochs=40)
    plan = compile_plan(load_spec(spec))
    dense = plan.trunks[0].key
    runner = cli(tmp_path, spec, "--workers", "2")
    checkpoint = Store(tmp_path / "store").stage_dir(dense) / "checkpoint.pt"
    assert appears(checkpoint, runner)
    workers = [pid for pid in processes_in(tmp_path, seconds=0) if parent_of(parent_of(pid)) == runner.pid]
    assert len(workers) == 2, f"two workers, children of the fork server: {workers}"
    for pid in workers:  # the OOM killer, say: one ran the dense stage, the other waited
        os.kill(pid, signal.SIGKILL)
    output = runner.communicate()[0]
    assert runner.returncode == 1 and "Traceback" not in output, output
    assert re.search(r"failed:.*its worker process died \(exit code -9", output.replace("\n", " ")), output
    assert f"0 stages ran, 0 were already done, 1 failed, {len(plan.stages) - 1} skipped" in output
    resumed_from, rerun_started = checkpoint_epoch(checkpoint), time.time()
    rerun = cli(tmp_path, spec, "--only", "kind=dense")  # the stage that failed, resumed (in the runner's process)
    rerun_output = rerun.communicate()[0]
    assert rerun.returncode == 0 and f"1 resuming (dense seed=0 at epoch {resumed_from}" in rerun_output, \
        output + rerun_output
    assert Store(tmp_path / "store").is_complete(dense)
    assert_rerun_resumed(f"sqlite:///{tmp_path}/mlflow.db", "tiny-run", dense, 40, rerun_started, resumed_from)


def parent_of(pid: int) -> int:
    """The parent's pid, 0 for a process that is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError):
        return 0


def _grandchild_dies_with_its_parent(pids) -> None:
    if os.fork() == 0:
        _die_with_parent()
        pids.put(os.getpid())
        time.sleep(60)
        os._exit(0)
    time.sleep(60)


@pytest.mark.skipif(not Path("/proc").exists(), reason="Linux: the kernel's parent-death signal")
def test_a_worker_is_killed_when_its_parent_dies():
    """A SIGKILLed runner's fork server exits; its workers must not train on, unseen, until their next message."""
    context = multiprocessing.get_context("fork")
    pids = context.Queue()
    parent = context.Process(target=_grandchild_dies_with_its_parent, args=(pids,))
    parent.start()
    worker = pids.get(timeout=30)
    os.kill(parent.pid, signal.SIGKILL)
    parent.join()
    for _ in range(50):
        if not Path(f"/proc/{worker}").exists() or Path(f"/proc/{worker}/stat").read_text().split(") ")[1][0] == "Z":
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    pytest.fail("the worker outlived its parent by 5 s")
