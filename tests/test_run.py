"""Running a plan end to end: real training on tiny data, a real MLflow sqlite store, resume after SIGKILL."""

import io
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from rich.console import Console

from conftest import THREE_ARMS, assert_rerun_resumed, checkpoint_epoch, default_signals, ltspec, write_tiny_spec
from ltspec import tracking
from ltspec.kinds.base import canonical
from ltspec.plan import compile_plan
from ltspec.points import rp_metric
from ltspec.runners.common import connect
from ltspec.runners.local import run_local
from ltspec.spec import load_spec
from ltspec.stages import Context, StageFailed, run_stage
from ltspec.store import Store
from ltspec.tracking import STAGE_KEY

pytestmark = pytest.mark.slow  # every test here trains and logs real runs


def write_spec(folder: Path, epochs: int = 2, extra_arms: str = "") -> Path:
    """The tiny spec (conftest's) in `folder`, trained `epochs` epochs, with `extra_arms` (lines of [arms])."""
    return write_tiny_spec(folder, epochs=epochs, arms=THREE_ARMS + "\n" + extra_arms)


def uri(folder: Path) -> str:
    """The tracking URI of the tiny spec written into `folder`."""
    return f"sqlite:///{folder}/mlflow.db"


def stage_runs(folder: Path) -> list:
    client = MlflowClient(tracking_uri=uri(folder))
    experiment = client.get_experiment_by_name("tiny-run")
    return [run for run in client.search_runs([experiment.experiment_id], "tags.`ltspec.role` = 'stage'")]


COUNTED = ("search_runs", "create_run", "log_batch", "set_terminated", "get_run", "get_metric_history")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny spec run once, with every call of COUNTED that the run made to MLflow counted (`calls`)."""
    folder = tmp_path_factory.mktemp("run")
    loaded = load_spec(write_spec(folder))
    plan = compile_plan(loaded)
    calls = dict.fromkeys(COUNTED, 0)

    def counted(name):
        method = getattr(MlflowClient, name)

        def call(*args, **kwargs):
            calls[name] += 1
            return method(*args, **kwargs)
        return call

    with pytest.MonkeyPatch.context() as patch:
        for name in COUNTED:
            patch.setattr(MlflowClient, name, counted(name))
        summary = run_local(loaded, plan, device="cpu")
    return folder, loaded, plan, summary, calls


def test_a_fresh_run_asks_mlflow_nothing_per_stage_and_closes_each_run_in_one_batch(finished):
    """One search for the whole plan and one per trunk; per stage: its run, its params, the epochs logged before
    each checkpoint (every epoch here) but the last, whose row goes with the final metrics in the one batch that
    closes the run, and its status. Each trunk's end is moved once, when the run ends."""
    _, _, plan, _, calls = finished
    trunks = [stage for stage in plan.stages if stage.kind.name == "dense"]
    trained = [stage for stage in plan.stages if stage.epochs > 0]
    assert calls["search_runs"] == 1 + len(trunks)
    assert calls["create_run"] == len(plan.stages) + len(trunks)
    assert calls["log_batch"] == 2 * len(plan.stages) + sum(stage.epochs - 1 for stage in trained)
    assert calls["set_terminated"] == len(plan.stages) + 2 * len(trunks)
    assert calls["get_run"] == calls["get_metric_history"] == 0


def test_every_stage_runs_and_is_logged_once(finished):
    folder, _, plan, summary, _ = finished
    assert summary.ok and sorted(summary.ran) == sorted(stage.key for stage in plan.stages)
    runs = stage_runs(folder)
    assert sorted(run.data.tags[STAGE_KEY] for run in runs) == sorted(stage.key for stage in plan.stages)
    assert {run.info.status for run in runs} == {"FINISHED"}
    store = Store(folder / "store")
    assert all(store.is_complete(stage.key) for stage in plan.stages)


def test_results_make_sense(finished):
    folder, _, plan, _, _ = finished
    store = Store(folder / "store")
    for stage in plan.stages:
        metrics = store.record(stage.key)["metrics"]
        if stage.kind.name in ("dense", "train"):
            assert 0.5 < metrics["final_test_accuracy"] <= 1.0, stage.describe()
        if stage.kind.name in ("mask", "train", "evaluate"):
            assert metrics["sparsity"] == pytest.approx(stage.labels["sparsity"], abs=0.01)
        if stage.kind.name == "measure":
            assert metrics and all(0.0 <= value <= 1.0 for value in metrics.values())
    dense_measure = next(s for s in plan.stages if s.kind.name == "measure" and len(s.parents) == 1)
    assert rp_metric("init", "trained", 0.2) in store.record(dense_measure.key)["metrics"]


def test_mlflow_runs_carry_tags_metrics_and_nesting(finished):
    folder, _, plan, _, _ = finished
    runs = {run.data.tags[STAGE_KEY]: run for run in stage_runs(folder)}
    lottery = next(a for a in plan.arms if a.arm == "lottery" and a.generator == "imp" and a.round == 2)
    run = runs[lottery.stage]
    tags = run.data.tags
    assert tags["ltspec.kind"] == "train" and tags["ltspec.arm"] == "lottery" and tags["ltspec.round"] == "2"
    assert tags["ltspec.sparsity_target"] == "0.75" and tags["ltspec.seed"] == "0"
    assert "mlflow.parentRunId" in tags
    assert {"final_test_accuracy", "train_loss", "test_accuracy", "lr", "sparsity"} <= set(run.data.metrics)
    history = MlflowClient(tracking_uri=f"sqlite:///{folder}/mlflow.db").get_metric_history(run.info.run_id,
                                                                                           "train_loss")
    assert [m.step for m in history] == [1, 2]


def test_imp_lottery_arm_is_the_imp_round(finished):
    _, _, plan, _, _ = finished
    rounds = [s for s in plan.stages if s.kind.name == "train" and s.labels.get("generator") == "imp"
              and s.config.start == "init"]
    assert len(rounds) == 2 and {s.labels["arm"] for s in rounds} == {"lottery"}


def test_a_second_run_trains_nothing_and_logs_nothing(finished):
    folder, loaded, plan, _, _ = finished
    before = len(stage_runs(folder))
    summary = run_local(loaded, plan, device="cpu")
    assert summary.ran == [] and len(summary.done) == len(plan.stages)
    assert len(stage_runs(folder)) == before


def cli(folder: Path, spec: Path, *options: str, **kwargs) -> subprocess.Popen:
    """`ltspec run SPEC` started in `folder`, its signals at their defaults, stderr with stdout unless asked."""
    return subprocess.Popen(default_signals([sys.executable, "-m", "ltspec", "run", str(spec), "--device", "cpu",
                                             *options]), cwd=folder, text=True,
                            **{"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, **kwargs})


def appears(path: Path, process: subprocess.Popen, polls: int = 4800) -> bool:
    """Whether `path` shows up while `process` runs, looking every 50 ms (four minutes at most)."""
    for _ in range(polls):
        if path.exists() or process.poll() is not None:
            break
        time.sleep(0.05)
    return path.exists()


def processes_in(folder: Path, seconds: float = 30) -> list[int]:
    """The processes working in `folder` (their working directory), waiting up to `seconds` for none to be left."""
    deadline = time.monotonic() + seconds
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and Path(entry / "cwd").resolve() == folder.resolve():
                    found.append(int(entry.name))
            except OSError:
                continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def final_metrics(folder: Path, spec: Path) -> dict:
    plan = compile_plan(load_spec(spec))
    store = Store(folder / "store")
    return {stage.key: store.record(stage.key)["metrics"] for stage in plan.stages}


def test_a_sigkill_mid_stage_takes_the_workers_along_and_the_rerun_resumes_to_identical_results(tmp_path,
                                                                                                  uninterrupted):
    """Against a run that nothing stopped, trained one stage at a time (SIGTERM: the test below). The rerun trains
    the dense stage only from its checkpoint's epoch on, and ends with the same metrics."""
    spec = write_spec(tmp_path, epochs=8)
    plan = compile_plan(load_spec(spec))
    dense = plan.trunks[0].key
    victim = cli(tmp_path, spec, "--workers", "2")
    checkpoint = Store(tmp_path / "store").stage_dir(dense) / "checkpoint.pt"
    assert appears(checkpoint, victim), "the dense stage never checkpointed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not processes_in(tmp_path), "a worker outlived its runner"
    assert not all(Store(tmp_path / "store").is_complete(stage.key) for stage in plan.stages)
    resumed_from, rerun_started = checkpoint_epoch(checkpoint), time.time()
    resumed = cli(tmp_path, spec)
    assert resumed.wait() == 0, resumed.stdout.read()
    assert_rerun_resumed(uri(tmp_path), "tiny-run", dense, 8, rerun_started, resumed_from)
    assert final_metrics(tmp_path, spec) == final_metrics(*uninterrupted)
    keys = [run.data.tags[STAGE_KEY] for run in stage_runs(tmp_path)]
    assert len(keys) == len(set(keys)) == len(plan.stages), "a stage was logged twice"


def test_two_concurrent_runs_train_each_stage_once(tmp_path):
    spec = write_spec(tmp_path)
    plan = compile_plan(load_spec(spec))
    first, second = cli(tmp_path, spec), cli(tmp_path, spec)
    outputs = [process.communicate()[0] for process in (first, second)]
    assert first.returncode == second.returncode == 0, outputs
    ran = [int(re.search(r"(\d+) stages ran", output).group(1)) for output in outputs]
    assert sum(ran) == len(plan.stages), outputs
    keys = [run.data.tags[STAGE_KEY] for run in stage_runs(tmp_path)]
    assert sorted(keys) == sorted(stage.key for stage in plan.stages)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("tiny-run").experiment_id
    assert len(client.search_runs([experiment], "tags.`ltspec.role` = 'trunk'")) == len(plan.trunks)


def test_a_diverging_arm_fails_alone_and_keeps_its_traceback_in_mlflow(tmp_path):
    """The `boom` arm (lr 1e12) diverges in its first epoch on each of its three masks: those stages fail, with one
    message each and their traceback as the run's `error.txt`, and everything independent of them finishes."""
    spec = write_spec(tmp_path, extra_arms='boom = { start = "init", lr = 1e12 }\n')
    process = cli(tmp_path, spec, "--workers", "2")
    output = process.communicate()[0]
    assert process.returncode == 1
    assert "Traceback" not in output
    assert re.search(r"train boom on .*the training loss became nan in epoch 1", output), output
    assert re.search(r"\d+ stages ran, 0 were already done, 3 failed, 0 skipped", " ".join(output.split())), output
    plan = compile_plan(load_spec(spec))
    store = Store(tmp_path / "store")
    boom = [s for s in plan.stages if s.labels.get("arm") == "boom"]
    others = [s for s in plan.stages if s.labels.get("arm") != "boom" and s.kind.name != "measure"]
    assert len(boom) == 3 and not any(store.is_complete(s.key) for s in boom)
    assert all(store.is_complete(s.key) for s in others)
    runs = stage_runs(tmp_path)
    assert {run.info.status for run in runs if run.data.tags[STAGE_KEY] in {s.key for s in boom}} == {"FAILED"}
    failed = next(run for run in runs if run.info.status == "FAILED")
    client = MlflowClient(tracking_uri=uri(tmp_path))
    text = Path(client.download_artifacts(failed.info.run_id, "error.txt", str(tmp_path))).read_text()
    assert "StageFailed" in text and "training loss became nan" in text


def test_a_validation_split_is_evaluated_every_epoch(tmp_path):
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text().replace('batch_size = 128', 'batch_size = 128\nvalidation_split = 0.2'))
    loaded = load_spec(spec)
    plan = compile_plan(loaded)
    summary = run_local(loaded, plan, device="cpu", track=False)
    assert summary.ok
    history = Store(tmp_path / "store").record(plan.trunks[0].key)["history"]
    assert [epoch for epoch, _ in history] == [1, 2]
    assert all(0.0 <= values["val_accuracy"] <= 1.0 and "test_accuracy" in values for _, values in history)


def test_ctrl_c_keeps_finished_epochs_and_marks_the_run_killed(tmp_path):
    spec = write_spec(tmp_path, epochs=30)
    plan = compile_plan(load_spec(spec))
    dense = plan.trunks[0].key
    process = cli(tmp_path, spec)
    checkpoint = Store(tmp_path / "store").stage_dir(dense) / "checkpoint.pt"
    assert appears(checkpoint, process)
    process.send_signal(signal.SIGINT)
    output = process.communicate()[0]
    assert process.returncode == 130, output
    assert "interrupted: by SIGINT" in output and "Traceback" not in output
    killed = [run.data.tags[STAGE_KEY] for run in stage_runs(tmp_path) if run.info.status == "KILLED"]
    assert len(killed) == 1
    assert (Store(tmp_path / "store").stage_dir(killed[0]) / "checkpoint.pt").exists()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, Path]:
    """An 8-epoch run of the tiny spec that nothing stopped, one stage at a time (in this process, untracked: only
    its records are compared): what a stopped and resumed run, with two workers, must equal."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    spec = write_spec(folder, epochs=8)
    loaded = load_spec(spec)
    assert run_local(loaded, compile_plan(loaded), device="cpu", console=Console(file=io.StringIO()), track=False).ok
    return folder, spec


def test_sigterm_stops_like_ctrl_c_and_the_rerun_resumes_to_identical_results(tmp_path, uninterrupted):
    """SIGTERM, as a scheduler stops a job (SIGHUP takes the same handler: test_preemption.py): one line on stderr,
    exit 143, the stage's run KILLED with its checkpoint kept; the rerun trains on from that checkpoint's epoch."""
    spec = write_spec(tmp_path, epochs=8)
    plan = compile_plan(load_spec(spec))
    process = cli(tmp_path, spec, "--workers", "2", stderr=subprocess.PIPE)
    assert appears(Store(tmp_path / "store").stage_dir(plan.trunks[0].key) / "checkpoint.pt", process)
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate()[1]
    assert process.returncode == 143, stderr
    assert stderr.splitlines() == [stderr.splitlines()[0]] and stderr.startswith(
        "interrupted: by SIGTERM; finished epochs are kept"), stderr
    runs = stage_runs(tmp_path)
    killed = [run for run in runs if run.info.status == "KILLED"]
    assert len(killed) == 1 and {run.info.status for run in runs} <= {"FINISHED", "KILLED"}
    key = killed[0].data.tags[STAGE_KEY]
    checkpoint = Store(tmp_path / "store").stage_dir(key) / "checkpoint.pt"
    resumed_from, rerun_started = checkpoint_epoch(checkpoint), time.time()
    resumed = cli(tmp_path, spec)
    assert resumed.wait() == 0, resumed.stdout.read()
    assert_rerun_resumed(uri(tmp_path), "tiny-run", key, 8, rerun_started, resumed_from)
    assert final_metrics(tmp_path, spec) == final_metrics(*uninterrupted)
    runs = stage_runs(tmp_path)
    assert sorted(run.data.tags[STAGE_KEY] for run in runs) == sorted(stage.key for stage in plan.stages)
    assert {run.info.status for run in runs} == {"FINISHED"}


def test_runs_of_dead_attempts_are_continued_or_killed_never_left_running(tmp_path):
    loaded = load_spec(write_spec(tmp_path))
    plan = compile_plan(loaded)
    dense = plan.trunks[0]
    tracker = connect(loaded, plan)
    lost = tracking.start_stage(tracker, dense, None, [])
    time.sleep(0.01)
    retried = tracking.start_stage(tracker, dense, None, [])  # a Ray retry that never saw the first attempt
    ctx = Context(store=Store(tmp_path / "store"), device=torch.device("cpu"),
                  stages={stage.key: stage for stage in plan.stages}, tracker=tracker)
    assert run_stage(dense, ctx)[1]
    runs = {run.info.run_id: run for run in stage_runs(tmp_path)}
    assert {run_id: run.info.status for run_id, run in runs.items()} == {lost: "KILLED", retried: "FINISHED"}
    assert len(runs[retried].data.metrics) > 0


def test_a_second_spec_reuses_the_dense_run_and_replays_a_rewind_point_it_lacks(tmp_path):
    """`ltspec run a.toml b.toml`, one after the other in one store: b is a under another name with a rewind arm.
    b finds every stage of a done, its dense run included (not trained again), and logs them to its own experiment
    tagged reused; its rewind arm needs θ1, which a's dense run did not keep, so b replays it: θ1 and every result
    of b equal those of b run alone in a fresh store."""
    shared, fresh = tmp_path / "shared", tmp_path / "fresh"
    shared.mkdir(), fresh.mkdir()
    rewinding = 'rewind = { start = "rewind@1" }\n'
    first = write_spec(shared, epochs=3).read_text()
    (shared / "a.toml").write_text(first)
    second = write_spec(shared, epochs=3, extra_arms=rewinding).read_text().replace('name = "tiny-run"',
                                                                                     'name = "tiny-run-b"')
    (shared / "b.toml").write_text(second)
    a, b = (compile_plan(load_spec(shared / name)) for name in ("a.toml", "b.toml"))
    assert 1 not in a.trunks[0].runtime["saves"] and 1 in b.trunks[0].runtime["saves"]
    assert a.trunks[0].key == b.trunks[0].key and {s.key for s in a.stages} < {s.key for s in b.stages}
    result = ltspec("run", "a.toml", "b.toml", "--device", "cpu", cwd=shared)
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert re.search(rf"2 specs: {len(b.stages)} stages", out), out
    counts = [tuple(map(int, found)) for found in re.findall(r"(\d+) stages ran, (\d+) were already done", out)]
    assert counts == [(len(a.stages), 0), (len(b.stages) - len(a.stages), len(a.stages))], out
    client = MlflowClient(tracking_uri=uri(shared))
    experiment = client.get_experiment_by_name("tiny-run-b").experiment_id
    reused = client.search_runs([experiment], "tags.`ltspec.reused` = 'true'")
    assert {run.data.tags[STAGE_KEY] for run in reused} == {stage.key for stage in a.stages}

    (fresh / "b.toml").write_text(second.replace(shared.as_posix(), fresh.as_posix()))
    alone = load_spec(fresh / "b.toml")
    assert run_local(alone, compile_plan(alone), device="cpu", track=False).ok
    dense = b.trunks[0].key
    replayed = Store(shared / "store").read_tensors(dense, "rewind@1")
    direct = Store(fresh / "store").read_tensors(dense, "rewind@1")
    assert replayed.keys() == direct.keys() and all(torch.equal(replayed[k], direct[k]) for k in direct)
    assert final_metrics(shared, shared / "b.toml") == final_metrics(fresh, fresh / "b.toml")


ADMM = {"name": "tiny-admm", "train": "", "arms": 'finetune = { start = "trained" }',
        "masks": '[masks.admm]\nkind = "admm"\nsparsities = [0.5]\nrho = 0.01\nrho_factor = 1.5\nepochs = 3\n'
                 'update_every = 5\n',
        "measure": 'p = [0.2]\npairs = [["finetune", "init"], ["finetune", "trained"]]'}


def test_admm_prunes_to_its_support_and_fine_tunes_the_admm_weights(tmp_path):
    spec = write_tiny_spec(tmp_path, "admm.toml", **ADMM)
    loaded = load_spec(spec)
    plan = compile_plan(loaded)
    assert run_local(loaded, plan, device="cpu", track=False).ok
    store = Store(tmp_path / "store")
    mask_stage = next(s for s in plan.stages if s.kind.name == "mask")
    assert mask_stage.epochs == 3 and plan.epochs == 2 + 3 + 2
    record = store.record(mask_stage.key)
    assert record["metrics"]["sparsity"] == pytest.approx(0.5, abs=1e-3) and len(record["history"]) == 3
    measure = next(s for s in plan.stages if s.kind.name == "measure" and len(s.parents) > 1)
    rp = store.record(measure.key)["metrics"]
    assert set(rp) == {rp_metric("finetune", "init", 0.2), rp_metric("finetune", "trained", 0.2)}
    assert rp[rp_metric("finetune", "trained", 0.2)] > rp[rp_metric("finetune", "init", 0.2)]


class Crash(Exception):
    """Stands for a process dying at the end of an epoch."""


def test_admm_resumes_from_its_checkpoint_with_identical_results(tmp_path):
    """The ADMM stage, stopped at the end of its second epoch, resumes from the first (its checkpoint), trains
    only the epochs after it, and ends with the mask, weights and history of a run that nothing stopped."""
    spec = write_tiny_spec(tmp_path, "admm.toml", **ADMM)
    plan = compile_plan(load_spec(spec))
    mask_stage = next(s for s in plan.stages if s.kind.name == "mask")

    def run(root: Path, crash_at: int | None) -> tuple[Store, list[int]]:
        trained = []

        def on_epoch(stage, epoch, values):
            if stage.key == mask_stage.key:
                trained.append(epoch)
                if epoch == crash_at:
                    raise Crash

        ctx = Context(store=Store(root), device=torch.device("cpu"), stages={s.key: s for s in plan.stages},
                      on_epoch=on_epoch)
        for stage in plan.stages:
            run_stage(stage, ctx)
        return ctx.store, trained

    reference, _ = run(tmp_path / "reference", None)
    with pytest.raises(StageFailed):
        run(tmp_path / "crashed", 2)
    assert checkpoint_epoch(Store(tmp_path / "crashed").stage_dir(mask_stage.key) / "checkpoint.pt") == 1
    resumed, trained = run(tmp_path / "crashed", None)
    assert trained == [2, 3], "the resumed stage trains the epochs after its checkpoint, and only those"
    for name in ("mask", "weights"):
        a, b = reference.read_tensors(mask_stage.key, name), resumed.read_tensors(mask_stage.key, name)
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert reference.record(mask_stage.key)["history"] == resumed.record(mask_stage.key)["history"]


def test_plan_shows_every_stage_done_after_a_run(finished):
    folder, loaded, plan, _, _ = finished
    result = ltspec("plan", str(loaded.path), "--json", cwd=folder)
    shown = json.loads(result.stdout)
    assert [stage["key"] for stage in shown["stages"]] == [stage.key for stage in plan.stages]
    assert all(stage["done"] for stage in shown["stages"])


def test_a_run_killed_before_its_params_gets_them(tmp_path):
    loaded = load_spec(write_spec(tmp_path))
    plan = compile_plan(loaded)
    dense = plan.trunks[0]
    tracker = connect(loaded, plan)
    bare = tracker.client.create_run(tracker.experiment_id, tags={**tracker.tags, **tracking.stage_tags(dense)})
    assert run_local(loaded, plan, device="cpu").ok
    run = tracker.client.get_run(bare.info.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["stage.epochs"] == "2"
    assert set(tracking.flat_params(canonical(dense.config))) <= set(run.data.params)


def test_a_stage_stopped_by_system_exit_is_killed_not_failed(tmp_path):
    """SystemExit is how a Ray worker answers SIGTERM: the stage's run is KILLED, without an error.txt, and the
    exit goes on its way rather than becoming the stage's failure."""
    loaded = load_spec(write_spec(tmp_path, epochs=4))
    plan = compile_plan(loaded)
    ctx = Context(store=Store(tmp_path / "store"), device=torch.device("cpu"),
                  stages={stage.key: stage for stage in plan.stages}, tracker=connect(loaded, plan))

    def stop(stage, epoch: int, values: dict) -> None:
        if epoch == 2:
            raise SystemExit(1)

    ctx.on_epoch = stop
    with pytest.raises(SystemExit):
        run_stage(plan.trunks[0], ctx)
    [run] = stage_runs(tmp_path)
    assert run.info.status == "KILLED"
    assert "error.txt" not in [artifact.path for artifact in ctx.tracker.client.list_artifacts(run.info.run_id)]
