"""The Slurm runner: its pure parts (packing, the batch script, sbatch's and squeue's text, site files), then
against a real one-node Slurm cluster started from nothing (munged, slurmctld, slurmd; `services.slurm_cluster`)
and an MLflow server on a real PostgreSQL behind a proxy that injects transient HTTP faults.

Every run trains digits with a small MLP on one thread (`resources.cpus = 1`), so the local runner's records are
the reference bit for bit."""

from __future__ import annotations

import http.client
import http.server
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient
from mlflow.entities import ViewType
from rich.console import Console

from conftest import QUICKSTART, ltspec, write_spec
from ltspec.plan import compile_plan
from ltspec.plan.select import parse_choices, select
from ltspec.report import write_report
from ltspec.runners.local import run_local
from ltspec.runners.slurm import (PREFIX, Queued, Request, SlurmError, StageState, follow, has_gpus, job_name, pack,
                                  parse_sbatch, parse_squeue, partition_of, plan_states, queue, read_site, request,
                                  sbatch_command, script, site_options, slots_for, submit)
from ltspec.spec import load_spec
from ltspec.spec.models import Resources
from ltspec.store import Store
from ltspec.stages.harness import RESUMED_FROM
from ltspec.tracking import ATTEMPT, STAGE_KEY
from services import Unavailable, free_port, postgres, slurm_cluster

QUICKSTART_PLAN = compile_plan(load_spec(QUICKSTART))


def trunks(stages) -> dict[str, str]:
    return {stage.key: stage.trunk for stage in stages}


# Packing

@settings(max_examples=60, deadline=None)
@given(limit=st.one_of(st.none(), st.integers(1, 6)), done_seed=st.integers(0, 2 ** 32 - 1),
       done_share=st.floats(0, 1))
def test_pack_puts_every_stage_in_one_job_after_the_jobs_of_its_parents(limit, done_seed, done_share):
    """Whatever is done already (closed under ancestors, as a store is), every stage left is in exactly one
    piece, each piece comes after the pieces holding its stages' parents, holds at most `limit` training stages,
    and stays within one trunk; without a limit each trunk is one piece."""
    import random

    plan = QUICKSTART_PLAN
    chooser = random.Random(done_seed)
    done: set[str] = set()
    for stage in plan.stages:
        if all(parent in done for parent in stage.parents) and chooser.random() < done_share:
            done.add(stage.key)
    pending = [stage for stage in plan.stages if stage.key not in done]
    pieces = pack(pending, trunks(pending), limit)
    where = {key: index for index, piece in enumerate(pieces) for key in piece.keys}
    assert sorted(where) == sorted(stage.key for stage in pending)
    assert sum(len(piece.keys) for piece in pieces) == len(pending)
    for index, piece in enumerate(pieces):
        assert all(earlier < index for earlier in piece.after)
        stages = [plan.stage(key) for key in piece.keys]
        assert len({trunks(stages)[stage.key] for stage in stages}) == 1
        if limit is not None:
            assert sum(bool(stage.epochs) for stage in stages) <= limit
        order = [stage.key for stage in pending if stage.key in piece.keys]
        assert list(piece.keys) == order  # a job runs its stages in plan order
        for stage in stages:
            for parent in stage.parents:
                if parent in where and where[parent] != index:
                    assert where[parent] in piece.after
    if limit is None:
        assert len(pieces) == len({trunks(pending)[stage.key] for stage in pending})


def test_pack_cuts_a_trunk_into_jobs_of_at_most_the_limit_and_zero_epoch_stages_ride_along():
    trunk = select(QUICKSTART_PLAN, parse_choices(["seed=0", "lr=0.01"]))
    pieces = pack(list(trunk.stages), trunks(trunk.stages), 3)
    training = sum(bool(stage.epochs) for stage in trunk.stages)
    assert len(pieces) == -(-training // 3)  # as few as the limit allows: no piece of zero-epoch stages alone
    assert pieces[0].keys[0] == trunk.trunks[0].key and not pieces[0].after


# Resources, the script, and Slurm's text

def test_resources_never_enter_a_stage_key(tmp_path):
    plain = QUICKSTART.read_text()
    asked = plain + '\n[resources]\ncpus = 4\ngpu_share = 0.5\nmemory = "8G"\ntime_limit = "1-00:00:00"\n'
    keys = []
    for index, text in enumerate((plain, asked)):
        (tmp_path / f"{index}.toml").write_text(text)
        keys.append([stage.key for stage in compile_plan(load_spec(tmp_path / f"{index}.toml")).stages])
    assert keys[0] == keys[1]


def test_request_multiplies_the_per_stage_figures_by_the_slots():
    resources = Resources(cpus=2, memory="3G", time_limit="1:00:00")
    assert request(resources, slots=4, gpu_share=0.25) == Request(4, 8, 1, "12288M", "1:00:00")
    assert request(resources, 1, 0.0, time_limit="30") == Request(1, 2, 0, "3072M", "30")
    assert request(Resources(memory="500"), 3, 1.0).memory == "1500M"
    assert slots_for(0.25, None) == 4 and slots_for(1.0, None) == 1 and slots_for(0.0, None) == 1
    assert slots_for(0.25, 2) == 2


def test_the_script_asks_for_its_resources_and_execs_the_job_entry_point(tmp_path):
    site = site_options(partition="gpu", account="lab", qos=None, more=("--constraint=a100",))
    assert partition_of(site) == "gpu" and partition_of(("-p a", "--partition=b")) == "b"
    assert partition_of(("--qos=x",)) is None
    text = script("ltspec-x", tmp_path, Request(4, 4, 1, "8G", "2:00:00"), site,
                  [sys.executable, "-m", "ltspec.runners.slurm_job", str(tmp_path / "ltspec-x.json")],
                  ["dense seed=0", "mask oneshot 50.0%"], Path("/home/me/lab"))
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    for option in ("--job-name=ltspec-x", f"--output={tmp_path}/ltspec-x.%j.log", "--cpus-per-task=4",
                   "--gres=gpu:1", "--mem=8G", "--time=2:00:00", "--requeue", "--signal=B:USR1@120",
                   "--partition=gpu", "--account=lab", "--constraint=a100", "--chdir=/home/me/lab"):
        assert f"#SBATCH {option}" in lines
    assert not any("--qos" in line for line in lines)
    assert lines[-1].startswith("exec ") and lines[-1].endswith(f"ltspec.runners.slurm_job {tmp_path}/ltspec-x.json")
    assert "#   mask oneshot 50.0%" in lines
    no_gpu = script("ltspec-x", tmp_path, Request(1, 1, 0, None, None), (), ["true"], [], tmp_path)
    assert "--gres" not in no_gpu and "--mem" not in no_gpu and "--time" not in no_gpu


def test_sbatch_and_squeue_text():
    assert sbatch_command(Path("/s/job.sh"), []) == ["sbatch", "--parsable", "/s/job.sh"]
    assert sbatch_command(Path("/s/job.sh"), ["12", "9", "12"]) == [
        "sbatch", "--parsable", "--dependency=afterok:9:12", "--kill-on-invalid-dep=yes", "/s/job.sh"]
    assert parse_sbatch("1234\n") == "1234" and parse_sbatch("77;cluster\n") == "77"
    with pytest.raises(SlurmError, match="not a job id"):
        parse_sbatch("sbatch: error: something")
    text = f"12|{PREFIX}abc|RUNNING|None\n13|{PREFIX}def|PENDING|Dependency\n14|jupyter|RUNNING|None\n"
    assert parse_squeue(text) == [Queued("12", f"{PREFIX}abc", "RUNNING", "None"),
                                  Queued("13", f"{PREFIX}def", "PENDING", "Dependency")]
    assert has_gpus("gpu:a100:4(S:0-1)\n(null)\n") and has_gpus("craynetwork:4,gpu:2") and not has_gpus("(null)\n")
    assert job_name(Path("/a"), ["k1", "k2"]) == job_name(Path("/a"), ["k2", "k1"]) != job_name(Path("/b"), ["k1"])


def test_states_read_the_store_the_queue_and_the_jobs_events(tmp_path):
    """One trunk of the quickstart: the dense stage done, a job running the first mask's stages (its first train
    stage started), a job pending on it, a stage that failed in an earlier job and later started in another that
    is gone (it stopped), a failed stage's dependents blocked, the rest todo."""
    from ltspec.runners.slurm import states

    trunk = select(QUICKSTART_PLAN, parse_choices(["seed=0", "lr=0.01"]))
    keys = [stage.key for stage in trunk.stages]
    folder = tmp_path / "slurm"
    folder.mkdir()
    running, pending = f"{PREFIX}running", f"{PREFIX}pending"
    (folder / f"{running}.json").write_text(json.dumps({"run": keys[2:5]}))
    (folder / f"{pending}.json").write_text(json.dumps({"run": keys[5:7]}))
    (folder / f"{running}.events").write_text(json.dumps({"event": "start", "stage": keys[3], "job": "7",
                                                          "time": 5}) + "\n")
    failed_first = [{"event": "start", "stage": keys[8], "job": "3", "time": 1},
                    {"event": "end", "stage": keys[8], "outcome": "failed", "message": "boom", "job": "3", "time": 2},
                    {"event": "start", "stage": keys[9], "job": "3", "time": 3},
                    {"event": "end", "stage": keys[9], "outcome": "failed", "message": "nan", "job": "3",
                     "time": 4}]
    (folder / f"{PREFIX}zzz-old.events").write_text("".join(json.dumps(event) + "\n" for event in failed_first))
    (folder / f"{PREFIX}aaa-new.events").write_text(json.dumps({"event": "start", "stage": keys[8], "job": "4",
                                                               "time": 6}) + "\n")
    jobs = [Queued("7", running, "RUNNING", "None"), Queued("8", pending, "PENDING", "Dependency"),
            Queued("9", f"{PREFIX}other-store", "PENDING", "Priority")]
    found = states(trunk, {keys[0]}, tmp_path, jobs)
    assert found[keys[0]].state == "done"
    assert found[keys[3]] == StageState("running", "7")
    assert found[keys[2]].mark() == "queued (job 7: its job is running)"
    assert found[keys[5]].mark() == "queued (job 8: Dependency)"
    assert found[keys[8]].state == "stopped" and found[keys[8]].log == folder / f"{PREFIX}aaa-new.4.log"
    assert found[keys[9]] == StageState("failed", "3", "nan", folder / f"{PREFIX}zzz-old.3.log")
    blocked = [stage.key for stage in trunk.stages if keys[9] in trunk.ancestors(stage.key)]
    assert blocked and all(found[key].state == "blocked" for key in blocked)
    assert found[keys[1]].state == "todo"


def test_a_site_file_holds_sbatch_options_and_refuses_anything_else(tmp_path):
    good = tmp_path / "site"
    good.write_text("# our cluster\n#SBATCH --partition=gpu\n\n--account=lab\n  --qos=normal\n")
    assert read_site(good) == ("--partition=gpu", "--account=lab", "--qos=normal")
    bad = tmp_path / "bad"
    bad.write_text("--partition=gpu\npartition = gpu\n")
    with pytest.raises(ValueError, match=r"bad:2: `partition = gpu` is not an sbatch option"):
        read_site(bad)


def test_slurm_options_with_another_runner_and_a_bad_site_file_are_refused(tmp_path):
    refused = ltspec("run", "--runner", "local", "--partition", "gpu", cwd=tmp_path)
    assert refused.returncode == 2 and "--partition is for --runner slurm only" in refused.stderr
    bad = tmp_path / "site"
    bad.write_text("partition gpu\n")
    refused = ltspec("run", "--runner", "slurm", "--site", str(bad), cwd=tmp_path)
    assert refused.returncode == 2 and "is not an sbatch option" in refused.stderr
    assert "Traceback" not in refused.stderr


# Against a real Slurm and PostgreSQL

SPEC = """\
name = "{spec_name}"
seeds = [0]

[data]
dataset = "digits"
batch_size = {batch_size}

[model]
arch = "mlp"

[train]
epochs = {epochs}
lr = {lr}

{masks}

[resources]
cpus = 1

[tracking]
uri = "{uri}"

[storage]
root = "{folder}/store"
checkpoint_seconds = 0
"""

MASKS = """\
[masks.oneshot]
kind = "oneshot"
sparsities = [0.5]

[arms]
lottery = { start = "init" }
reinit = { start = "reinit" }

[measure]
p = [0.2]
pairs = [["init", "trained"], ["init*mask", "lottery"]]
"""


def spec_in(folder: Path, *, name: str, uri: str | None = None, epochs: int = 2, lr: float = 0.05,
            masks: str = MASKS, batch_size: int = 128) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_spec(folder, SPEC, spec_name=name, uri=uri or f"sqlite:///{folder.as_posix()}/mlflow.db",
                      epochs=epochs, lr=lr, masks=masks, batch_size=batch_size)


def quiet() -> Console:
    return Console(file=io.StringIO())


def records(spec: Path) -> dict:
    loaded = load_spec(spec)
    store = Store(Path(loaded.spec.storage.root))
    return {stage.key: (store.record(stage.key)["metrics"], store.record(stage.key)["history"])
            for stage in compile_plan(loaded).stages}


def local_reference(folder: Path, **spec) -> Path:
    path = spec_in(folder, **spec)
    loaded = load_spec(path)
    assert run_local(loaded, compile_plan(loaded), device="cpu", console=quiet()).ok
    return path


@pytest.fixture(scope="module")
def mlflow_process(tmp_path_factory):
    """PostgreSQL, and an MLflow server on it starting (its migrations take seconds) while the Slurm tests run;
    yields (the server, its URI, its log), or the reason neither could start."""
    folder = tmp_path_factory.mktemp("mlflow-postgres")
    try:
        with postgres() as database:
            port = free_port()
            with open(folder / "server.log", "w") as log:
                server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                                           database.uri, "--artifacts-destination", str(folder / "artifacts"),
                                           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                yield server, port, folder / "server.log"
            finally:
                os.killpg(server.pid, signal.SIGKILL)  # nothing of it is kept
                server.wait()
    except Unavailable as reason:
        yield str(reason)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory, mlflow_process):
    """A one-node Slurm cluster for this module's tests, Slurm's commands pointed at it."""
    try:
        with slurm_cluster(tmp_path_factory.mktemp("slurm")) as cluster, pytest.MonkeyPatch.context() as patch:
            patch.setenv("SLURM_CONF", str(cluster.conf))
            yield cluster
    except Unavailable as reason:
        pytest.skip(f"no Slurm cluster: {reason}")


def wait_for(condition, what: str, seconds: float = 120):
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.1)
    return found


def events(store: Path) -> list[dict]:
    return [json.loads(line) for path in (store / "slurm").glob("*.events") for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_a_stage_job_requeued_at_its_time_limit_then_scancelled_resumes_bit_identically(slurm, tmp_path):
    """The time-limit warning (SIGUSR1, sent here by hand) makes the job requeue itself: Slurm stops it with
    SIGTERM, the dense stage keeps its checkpoint and its MLflow run is KILLED, and the requeued attempt continues
    both. scancel then stops it the same way, and the next submission continues them again: every record equals
    an uninterrupted local run's and each epoch is logged once, to one run. (Before the cancel the job is
    suspended while the reference trains, then resumed, and cancelled as soon as it has trained an epoch more, so
    that the cancel finds it mid-training however loaded the machine is: cancelled at once, before the node had
    resumed its processes, the job was killed without its SIGTERM, its run left RUNNING.)"""
    epochs = 40
    dense_only = {"name": "scancel", "epochs": epochs, "masks": "", "batch_size": 16}
    spec = spec_in(tmp_path / "slurm", **dense_only)
    loaded = load_spec(spec)
    plan = compile_plan(loaded)
    (job,) = submit(loaded, plan, device="cpu", console=quiet()).jobs
    store = Store(Path(loaded.spec.storage.root))
    dense = plan.trunks[0].key
    client = MlflowClient(tracking_uri=loaded.spec.tracking.uri)
    from ltspec.plan.status import status

    def epochs_in_attempt(attempt: int) -> int:
        starts = [index for index, event in enumerate(events(store.root)) if event["event"] == "start"]
        after = events(store.root)[starts[attempt - 1]:] if len(starts) >= attempt else []
        return sum(event["event"] == "epoch" for event in after)

    def stopped(reason: str) -> int:
        (run,) = client.search_runs([client.get_experiment_by_name("scancel").experiment_id],
                                    f"tags.`{STAGE_KEY}` = '{dense}'")
        assert run.info.status == "KILLED", reason
        reached = status(plan, store).partial[dense]
        assert 0 < reached < epochs, f"{reason}: not mid-training"
        return reached

    wait_for(lambda: epochs_in_attempt(1) >= 2, "the first attempt's epochs")
    subprocess.run(["scancel", "--batch", "--signal=USR1", job], check=True)
    wait_for(lambda: [queued.state for queued in queue()] == ["PENDING"], "the job's requeue")
    first = stopped("requeued")
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)  # held a while otherwise
    wait_for(lambda: epochs_in_attempt(2) >= 1 and status(plan, store).partial.get(dense, 0) > first,
             "the requeued attempt's first checkpoint")
    subprocess.run(["scontrol", "suspend", job], check=True)
    reference = local_reference(tmp_path / "local", **dense_only)  # while the job is suspended
    suspended_at = epochs_in_attempt(2)
    subprocess.run(["scontrol", "resume", job], check=True)
    wait_for(lambda: epochs_in_attempt(2) > suspended_at, "an epoch after the resume")
    subprocess.run(["scancel", job], check=True)
    wait_for(lambda: not queue(), "the cancelled job's end")
    cancelled = stopped("cancelled")
    assert cancelled > first, "the requeued attempt trained no epoch"

    second = submit(loaded, plan, device="cpu", console=quiet())
    assert sorted(key for keys in second.jobs.values() for key in keys) == sorted(s.key for s in plan.stages)
    assert follow(plan, store.root, quiet(), poll_seconds=0.2).ok
    assert records(spec) == records(reference)
    (run,) = client.search_runs([client.get_experiment_by_name("scancel").experiment_id],
                                f"tags.`{STAGE_KEY}` = '{dense}'")
    assert run.info.status == "FINISHED"
    steps = [metric.step for metric in client.get_metric_history(run.info.run_id, "train_loss")]
    assert sorted(steps) == list(range(1, epochs + 1)), "an epoch is missing or was logged twice"
    resumed = sorted(metric.step for metric in client.get_metric_history(run.info.run_id, RESUMED_FROM))
    assert resumed == [first, cancelled], "each attempt after a stop trains on from its checkpoint's epoch"


@pytest.mark.slow
def test_a_failing_stage_cancels_the_jobs_after_it_and_plan_shows_it_with_its_log(slurm, tmp_path):
    """The dense stage diverges (lr 1e6): its job fails, Slurm cancels the two arms' jobs that wait on it
    (nothing hangs in the queue), and `ltspec plan` names the failure, its message and the job's log."""
    spec = spec_in(tmp_path, name="failing", lr=1e6)
    ran = ltspec("run", str(spec), "--runner", "slurm", "--device", "cpu", "--stages-per-job", "1", "--wait",
                 cwd=tmp_path)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "submitted 3 Slurm jobs" in ran.stdout and "1 failed" in ran.stdout
    assert "is a file: Slurm jobs on other nodes" in " ".join(ran.stdout.split())  # the sqlite warning
    assert not queue(), "a job waiting on the failed one is still queued"
    shown = ltspec("plan", str(spec), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    failed = [line for line in shown.stdout.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "dense seed=0" in failed[0] and "loss became nan" in failed[0]
    log = Path(failed[0].rsplit("log ", 1)[1])
    assert log.exists() and "failed" in log.read_text()
    assert "blocked" in shown.stdout and "on Slurm: 1 failed" in shown.stdout


class FaultyProxy(http.server.ThreadingHTTPServer):
    """A proxy to the MLflow server that makes every fourth write (a POST to runs/, a PUT of an artifact) fail in
    one of three ways, in turn: 503 without reaching the server; 502 after the server did the work; the connection
    closed after the server did the work. The first stage run's creation loses its answer, so a creation is
    repeated at least once."""

    def __init__(self, target_port: int):
        self.target, self.count, self.faults, self.lock = target_port, 0, [], threading.Lock()
        super().__init__(("127.0.0.1", 0), ProxyHandler)

    def fault(self, method: str, path: str, body: bytes) -> str | None:
        writes = method in ("POST", "PUT") and ("/mlflow/runs/" in path or "/mlflow-artifacts/" in path)
        with self.lock:
            if not writes:
                return None
            self.count += 1
            first_create = path.endswith("/runs/create") and b"ltspec.stage_key" in body and \
                not any(f[1].endswith("/runs/create") for f in self.faults)
            if first_create or self.count % 4 == 0:
                kind = "lose" if first_create else ("refuse", "lose", "drop")[self.count // 4 % 3]
                self.faults.append((kind, path))
                return kind
            return None


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fault = self.server.fault(self.command, self.path, body)
        if fault == "refuse":
            return self._answer(503, b"injected", {})
        connection = http.client.HTTPConnection("127.0.0.1", self.server.target, timeout=60)
        headers = {name: value for name, value in self.headers.items() if name.lower() != "host"}
        connection.request(self.command, self.path, body, headers)
        response = connection.getresponse()
        payload = response.read()
        connection.close()
        if fault == "lose":
            return self._answer(502, b"injected", {})
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._answer(response.status, payload, dict(response.getheaders()))

    def _answer(self, status: int, payload: bytes, headers: dict) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward


@pytest.fixture(scope="module")
def mlflow_server(mlflow_process):
    """The MLflow server on PostgreSQL once it answers, behind the fault-injecting proxy: (proxy URI, proxy)."""
    if isinstance(mlflow_process, str):
        pytest.skip(f"no PostgreSQL: {mlflow_process}")
    server, port, log = mlflow_process

    def answers() -> bool:
        assert server.poll() is None, log.read_text()
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).status == 200
        except OSError:
            return False

    wait_for(answers, "the MLflow server", seconds=300)
    proxy = FaultyProxy(port)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{proxy.server_address[1]}", proxy
    proxy.shutdown()


def reports(spec: Path, out: Path) -> dict[str, str]:
    assert write_report(load_spec(spec), formats=["csv", "md"], out_dir=out, console=quiet()) == 0
    return {path.name: path.read_text() for path in sorted(out.iterdir()) if path.suffix in (".csv", ".md")}


@pytest.mark.slow
def test_slurm_through_a_faulty_mlflow_server_on_postgres_equals_the_local_runner(slurm, mlflow_server, tmp_path):
    """One job trains two stages side by side (`--slots 2`), logging through a proxy that fails every fourth write
    to MLflow's server on PostgreSQL: a second submission while the job is queued or running submits nothing; the
    records and the report equal the local runner's; every stage has one run holding each (metric, step) of its
    record exactly once, and the creation the proxy repeated left a deleted twin, not a second run."""
    uri, proxy = mlflow_server
    reference = local_reference(tmp_path / "local", name="quick")
    spec = spec_in(tmp_path / "slurm", name="quick", uri=uri)
    loaded = load_spec(spec)
    plan = compile_plan(loaded)
    first = submit(loaded, plan, device="cpu", slots=2, console=quiet())
    assert len(first.jobs) == 1
    shown = plan_states(plan, set(), Path(loaded.spec.storage.root))
    assert {state.state for state in shown.values()} <= {"queued", "running", "done"}
    again = submit(loaded, plan, device="cpu", slots=2, console=quiet())
    assert not again.jobs and len(again.held) + len(again.done) == len(plan.stages)
    assert len(queue()) <= 1
    assert follow(plan, Path(loaded.spec.storage.root), quiet(), poll_seconds=0.2).ok

    assert records(spec) == records(reference)
    assert reports(spec, tmp_path / "report-slurm") == reports(reference, tmp_path / "report-local")
    kinds = {kind for kind, _ in proxy.faults}
    assert kinds == {"refuse", "lose", "drop"}, proxy.faults

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("quick").experiment_id
    runs = client.search_runs([experiment], "tags.`ltspec.role` = 'stage'")
    assert sorted(run.data.tags[STAGE_KEY] for run in runs) == sorted(stage.key for stage in plan.stages)
    store = Store(Path(loaded.spec.storage.root))
    for run in runs:
        stage = plan.stage(run.data.tags[STAGE_KEY])
        record = store.record(stage.key)
        wanted = sorted({(name, epoch) for epoch, values in record["history"] for name in values} |
                        {(name, stage.epochs) for name in record["metrics"]})
        logged = sorted((metric.key, metric.step) for name in run.data.metrics
                        for metric in client.get_metric_history(run.info.run_id, name))
        assert logged == wanted, stage.describe()
    twins = client.search_runs([experiment], f"tags.`{ATTEMPT}` != ''", run_view_type=ViewType.DELETED_ONLY)
    assert twins, "no run creation was repeated: the proxy did not test it"
