"""The Ray runner: the plan of `ltspec.runners.local` on a Ray cluster, each stage a task that waits on its parents'.

Like the local runner it decides only where and when: each task builds its own `Context` and calls
`ltspec.stages.run_stage`. A task takes its parents' results (their ObjectRefs) as arguments, so Ray itself
schedules the DAG: a stage starts once its parents are done, on any node with the GPU share and CPUs it asks for.
Tasks return small records (status, final metrics or the failure message), never tensors: weights travel through
the store, which every worker reaches by the same absolute path.

On one machine nothing needs setting up. On several, every node must see the same store and the same MLflow: the
store on a shared filesystem (NFS, say) mounted at the same path, MLflow behind a server. Nothing can tell a
shared mount from a local disk, so the runner asks for that explicitly: on a multi-node cluster it refuses a
relative store path and a tracking URI that is a local file (sqlite, file:).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ray
from ray._private import ray_constants
from ray.exceptions import RayError
import torch
from rich.console import Console
from rich.progress import Progress

from ltspec import plugins, preemption, tracking
from ltspec.plan import Plan, Stage
from ltspec.runners.common import (Summary, Workspace, architecture, close_trunks, connect, gpus_per_stage,
                                   local_file, located, progress_columns, reproducible, stage_threads)
from ltspec.spec import LoadedSpec, Spec
from ltspec.stages import Context, StageFailed, run_stage
from ltspec.store import Store

LOST_WORKER_RETRIES = 2  # a worker lost to a dead node or the OOM killer; the stage resumes from its checkpoint
NODE = "ltspec.ray_node"
CANCEL_GRACE_SECONDS = 10  # stopped stages marking their runs KILLED


class ClusterError(ValueError):
    """A cluster this spec cannot run on as it stands; the message says what to change."""


def check_cluster(nodes: list[dict], tracking_uri: str, store_root: str) -> None:
    """Refuse a multi-node cluster unless the store and MLflow are reachable from every node.

    `nodes` is `ray.nodes()`: dicts with an `Alive` flag. A relative store path or a file tracking URI means a
    folder on each machine, so workers elsewhere would write results this machine never sees.
    """
    alive = [node for node in nodes if node.get("Alive")]
    if len(alive) <= 1:
        return
    problems = []
    if local_file(tracking_uri):
        problems.append(f"the tracking URI `{tracking_uri}` is a file on this machine")
    if not Path(store_root).is_absolute():
        problems.append(f"the store root `{store_root}` is a relative path")
    if problems:
        raise ClusterError(
            f"refusing to run on a {len(alive)}-node Ray cluster: {' and '.join(problems)}, so workers on other "
            "nodes would keep their results where this machine never sees them. Mount one shared filesystem (NFS, "
            "say) at the same path on every node and set `[storage] root` to an absolute path on it; run an MLflow "
            "server every node can reach (`mlflow server --backend-store-uri sqlite:///mlflow.db --host 0.0.0.0`) "
            "and set `[tracking] uri = \"http://HEAD:5000\"`. On a single machine neither is needed.")


@ray.remote(max_retries=LOST_WORKER_RETRIES, retry_exceptions=False)
def _stage_task(key: str, stages: dict[str, Stage], workspace: Workspace, trunk_run: str, known_runs: list,
                *parents: dict) -> dict:
    """Run one stage in a worker, or report it blocked when a parent failed.

    A StageFailed is the stage's real outcome (a diverged loss, say), so it comes back as a record, not an
    exception: Ray never retries it, and retries only a worker that died. The retry continues the dead attempt's
    MLflow run and checkpoint (`run_stage` looks both up under the stage's claim). `known_runs`: the stage's runs
    in the driver's snapshot.
    """
    if any(parent["status"] in ("failed", "blocked") for parent in parents):
        return {"key": key, "status": "blocked"}
    if threading.current_thread() is threading.main_thread():
        # ray.cancel interrupts a running task with SIGINT: a worker of a cluster started by a driver that ignores
        # SIGINT (`nohup ltspec run --runner ray &`) inherits the ignore and could not be stopped
        signal.signal(signal.SIGINT, signal.default_int_handler)
    plugins.load()  # a worker process has not loaded the spec: a plugin's model, dataset or generator may be named
    torch.set_num_threads(workspace.threads)
    trunk = stages[key].trunk
    # the runs this worker creates name its node (`ltspec.ray_node`, Ray's node id), to trace a stage to a machine
    ctx = Context(store=Store(Path(workspace.store_root)),
                  device=torch.device("cuda" if ray.get_gpu_ids() else "cpu"), stages=stages,
                  tracker=workspace.tracker({NODE: ray.get_runtime_context().get_node_id()}),
                  trunk_runs={trunk: trunk_run}, runs={key: known_runs})
    try:
        with reproducible(workspace.deterministic):
            record, ran = run_stage(stages[key], ctx)
    except StageFailed as failure:
        return {"key": key, "status": "failed", "message": str(failure)}
    return {"key": key, "status": "ran" if ran else "done", "metrics": record["metrics"]}


def run_ray(loaded: LoadedSpec, plan: Plan, *, address: str | None = None, gpu_share: float | None = None,
            console: Console | None = None, plan_json: dict | None = None) -> Summary:
    """Run every stage of the plan not done yet as a Ray task, and wait for all of them.

    `address` is a running cluster's (`auto` for the one `ray start` began on this machine); without one, Ray
    connects to RAY_ADDRESS or a cluster started here, else starts a local one for this run. `gpu_share`
    overrides the spec's `resources.gpu_share`. Stages already complete in the store are not submitted: the
    driver only logs them to this experiment when it lacks them, as the local runner does.
    """
    console = console or Console()
    spec = loaded.spec
    tracker = connect(loaded, plan)
    driver = Context(store=Store(Path(spec.storage.root).resolve()), device=torch.device("cpu"),
                     stages={stage.key: located(stage) for stage in plan.stages}, tracker=tracker,
                     runs=tracking.runs_by_stage(tracker))
    outcomes: dict[str, dict] = {}
    try:
        with Progress(*progress_columns(), console=console, transient=False) as progress:
            overall = progress.add_task("stages", total=len(plan.stages), info="")
            pending = []
            for stage in plan.stages:
                if driver.store.is_complete(stage.key):
                    run_stage(driver.stages[stage.key], driver)
                    outcomes[stage.key] = {"key": stage.key, "status": "done"}
                    progress.advance(overall)
                else:
                    pending.append(driver.stages[stage.key])
            if pending:
                handlers = preemption.handlers()
                with _connected(address):
                    preemption.restore(handlers)  # ray.init put its own SIGTERM handler, which exits on the spot
                    check_cluster(ray.nodes(), spec.tracking.uri, spec.storage.root)
                    refs = _submit(pending, driver, spec, gpu_share)
                    try:
                        _collect(refs, plan, outcomes, progress, overall)
                    except KeyboardInterrupt:
                        _cancel(list(refs.values()))
                        raise
    finally:
        close_trunks(tracker, driver.trunk_runs, loaded, plan_json)
    return _summary(plan, outcomes)


@contextmanager
def _connected(address: str | None) -> Iterator[None]:
    """Join the cluster unless this process already has (a notebook, a test), and leave only what it joined.

    With an address (or RAY_ADDRESS), join that cluster. Without one, start a cluster private to this run, on the
    loopback interface only: Ray's local-only mode (its default on macOS and Windows, switched on here by its
    `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` and node address 127.0.0.1) binds every server it starts, GCS, raylet,
    workers and agents, to 127.0.0.1, where on Linux they would listen on every interface. The cluster is shut
    down when the run ends, fails or is interrupted. If the driver dies without a word (SIGKILL, the OOM killer),
    Ray's GCS, raylet and workers die with it, but its agents linger a minute, waiting on the dead GCS; so a
    reaper process, told the cluster's processes when it starts, kills those left when the driver's end of its
    pipe closes (the kernel closes it however the driver dies).
    """
    if ray.is_initialized():
        yield
        return
    private = address is None and not os.environ.get("RAY_ADDRESS")
    if private:
        local_only, cluster_mode = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", ray_constants.ENABLE_RAY_CLUSTER
        inherited = os.environ.get(local_only)
        os.environ[local_only], ray_constants.ENABLE_RAY_CLUSTER = "0", False  # children inherit; this process reads
        try:
            ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
        finally:
            ray_constants.ENABLE_RAY_CLUSTER = cluster_mode
            if inherited is None:
                del os.environ[local_only]
            else:
                os.environ[local_only] = inherited
        reaper = subprocess.Popen([sys.executable, "-c", REAPER, *_descendants(os.getpid())], stdin=subprocess.PIPE,
                                  start_new_session=True) if Path("/proc").is_dir() else None
    else:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        reaper = None
    try:
        yield
    finally:
        ray.shutdown()
        if reaper is not None:
            reaper.stdin.close()
            reaper.wait()


REAPER = """
import os, signal, sys
sys.stdin.read()  # returns when the driver's end closes: a normal end or any death
for process in sys.argv[1:]:
    pid, started = process.split(":")
    try:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[19] == started:  # the same process, not a reused pid
                os.kill(int(pid), signal.SIGKILL)
    except OSError:
        pass
"""


def _descendants(pid: int) -> list[str]:
    """`pid:start-time` of every process below `pid`, from /proc (the start time tells a reused pid apart)."""
    children: dict[str, list[tuple[str, str]]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(fields[1], []).append((stat.parent.name, fields[19]))
    found, frontier = [], [str(pid)]
    while frontier:
        for child, started in children.get(frontier.pop(), []):
            found.append(f"{child}:{started}")
            frontier.append(child)
    return found


def _submit(pending: list[Stage], driver: Context, spec: Spec, gpu_share: float | None) -> dict[str, ray.ObjectRef]:
    """One task per pending stage, in plan order, with the refs of its submitted parents as arguments.

    Trunk runs are created here, before any task starts, so that two stages of one trunk never race to create it.
    """
    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    share = gpu_share if gpu_share is not None else spec.resources.gpu_share
    workspace = Workspace.of(driver.store, driver.tracker, stage_threads(spec), spec.resources.deterministic)
    stages = ray.put(driver.stages)
    refs: dict[str, ray.ObjectRef] = {}
    for stage in pending:
        trunk = stage.trunk
        if trunk not in driver.trunk_runs:
            driver.trunk_runs[trunk] = tracking.trunk_run(driver.tracker, driver.stages[trunk])
        arch = architecture(stage, driver.stages)
        task = _stage_task.options(num_cpus=spec.resources.cpus, num_gpus=gpus_per_stage(arch, share, cluster_gpus),
                                   name=stage.describe())
        refs[stage.key] = task.remote(stage.key, stages, workspace, driver.trunk_runs[trunk],
                                      driver.runs.get(stage.key, []), *(refs[p] for p in stage.parents if p in refs))
    return refs


def _collect(refs: dict[str, ray.ObjectRef], plan: Plan, outcomes: dict[str, dict], progress: Progress,
             overall) -> None:
    """Wait for every task; each batch of finished ones is read in plan order, so a parent's outcome is known
    before its children's."""
    order = {stage.key: index for index, stage in enumerate(plan.stages)}
    keys = {ref: key for key, ref in refs.items()}
    waiting = list(refs.values())
    while waiting:
        ready, waiting = ray.wait(waiting, num_returns=1)
        if waiting:
            more, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=0)
            ready += more
        for ref in sorted(ready, key=lambda ref: order[keys[ref]]):
            stage = plan.stage(keys[ref])
            outcome = outcomes[stage.key] = _outcome(ref, stage, outcomes)
            if outcome["status"] == "failed":
                progress.console.print(f"[red]failed:[/] {outcome['message']}")
            accuracy = outcome.get("metrics", {}).get("final_test_accuracy")
            score = f" test {accuracy:.3f}" if accuracy is not None else ""
            progress.update(overall, advance=1, info=f"{outcome['status']}: {stage.describe()}{score}")


def _cancel(refs: list[ray.ObjectRef]) -> None:
    """Stop every task on a Ctrl-C, SIGTERM or SIGHUP, as the local runner stops: a running stage gets a
    KeyboardInterrupt, so its MLflow run is marked KILLED and its checkpoint stays. The driver waits up to
    CANCEL_GRACE_SECONDS for them (a scheduler's grace before SIGKILL is often 30 s)."""
    for ref in refs:
        ray.cancel(ref)
    ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_SECONDS)


def _outcome(ref: ray.ObjectRef, stage: Stage, outcomes: dict[str, dict]) -> dict:
    """The task's record; a task that raised is blocked when a parent failed (Ray hands the parent's error to its
    children) and failed otherwise, e.g. a worker lost more often than the retries allow."""
    try:
        return ray.get(ref)
    except RayError as error:
        if any(outcomes.get(parent, {}).get("status") in ("failed", "blocked") for parent in stage.parents):
            return {"key": stage.key, "status": "blocked"}
        cause = getattr(error, "cause", None) or error
        return {"key": stage.key, "status": "failed",
                "message": str(StageFailed(stage, f"{type(cause).__name__}: {cause}"))}


def _summary(plan: Plan, outcomes: dict[str, dict]) -> Summary:
    summary = Summary()
    for stage in plan.stages:
        outcome = outcomes[stage.key]
        if outcome["status"] == "failed":
            summary.failed[stage.key] = outcome["message"]
        else:
            {"ran": summary.ran, "done": summary.done, "blocked": summary.blocked}[outcome["status"]].append(stage.key)
    return summary


def launch(loaded: LoadedSpec, plan: Plan, options, **display) -> Summary:
    """`ltspec run --runner ray` (`ltspec.runners.launch`)."""
    return run_ray(loaded, plan, address=options.address, gpu_share=options.gpu_share, **display)
