"""The Slurm runner: a plan's unfinished stages as Slurm batch jobs whose dependencies follow the DAG.

`ltspec run SPEC --runner slurm` cuts the stages that are neither done in the store nor held by a live job into
pieces (`pack`: by default one piece per dense trunk, so a trunk's stages share one job's start-up and its queue
wait; `--stages-per-job N` cuts trunks finer), writes each piece a manifest and a batch script under the store,
and submits them with `sbatch`, each job waiting (`afterok`) for the jobs that hold its stages' parents and
cancelled by Slurm if one of those fails (`--kill-on-invalid-dep=yes`). A job runs its piece with the local
runner's machinery (`ltspec.runners.slurm_job`), so a stage lives exactly as it does on the local runner: under
the store's claim, its MLflow run created or continued, a SIGTERM answered by a checkpoint and a KILLED run.

The store is the truth about what is done; Slurm's queue (`squeue`, no accounting needed) says only what is in
flight. A job's name is `ltspec-` and a hash of its store and its stages, and its manifest, found by that name in
the store, lists the stages it holds: that is how a second submission sees what is queued or running and submits
nothing twice, and how `ltspec plan` shows queued, running, done and failed stages. Everything a job writes is in
`STORE/slurm/`: `NAME.json` (its manifest), `NAME.sh` (its script: `sbatch` it by hand to rerun it),
`NAME.JOBID.log` (its output) and `NAME.events` (each stage's start, epochs and end, one JSON line each).

The pure parts come first (site settings, resources, packing, the script, sbatch's and squeue's text), then what
talks to Slurm, then submission and status. Nothing here imports torch or MLflow at module level: `ltspec plan`
shows a Slurm status torch-free.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import shlex
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ltspec.faults import EnvironmentFault
from ltspec.plan import Plan, Stage

if TYPE_CHECKING:
    from rich.console import Console

    from ltspec.runners.common import Summary
    from ltspec.spec import LoadedSpec
    from ltspec.spec.models import Resources

PREFIX = "ltspec-"  # every job's name starts with it
FOLDER = "slurm"  # under the store root: manifests, scripts, logs and events of the jobs
WARNING_SECONDS = 120  # a job hears SIGUSR1 this long before its time limit (Slurm may send it up to 60 s early)
SLURM_TIMEOUT = 60  # seconds an sbatch, squeue or sinfo call may take (a busy controller answers slowly)


class SlurmError(EnvironmentFault):
    """Slurm's commands are missing, or one refused: the message quotes it."""


# Site settings: where jobs go, never what they compute.

def site_options(partition: str | None, account: str | None, qos: str | None, more: Iterable[str] = ()) -> tuple:
    """The site's sbatch options for every job (from the command line or a site file: never from the spec, whose
    results must not depend on where they ran)."""
    named = {"partition": partition, "account": account, "qos": qos}
    return tuple(f"--{name}={value}" for name, value in named.items() if value) + tuple(more)


def read_site(path: Path) -> tuple[str, ...]:
    """A site file's sbatch options: one per line, as `--option=value` or as a batch script has it (`#SBATCH
    --option=value`); blank lines and other `#` lines are comments. A line that is neither is refused, naming it."""
    try:
        text = path.read_text()
    except OSError as error:
        raise ValueError(f"cannot read the site file {path}: {error.strerror or error}") from None
    options = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line.startswith("#SBATCH"):
            line = line.removeprefix("#SBATCH").strip()
        elif not line or line.startswith("#"):
            continue
        if not line.startswith("-"):
            raise ValueError(f"{path}:{number}: `{line}` is not an sbatch option; a site file has one per line, "
                             "as `--partition=gpu` or `#SBATCH --partition=gpu`, and `#` comments")
        options.append(line)
    return tuple(options)


# Resources: what one job asks for.

@dataclass(frozen=True)
class Request:
    """What one job asks Slurm for: `slots` stages side by side, each with the spec's CPUs, memory and GPU share."""

    slots: int
    cpus: int
    gpus: int
    memory: str | None  # sbatch's --mem, e.g. `8G`
    time_limit: str | None


MEGABYTES = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 ** 2}


def request(resources: Resources, slots: int, gpu_share: float, time_limit: str | None = None) -> Request:
    """The job's request for `slots` stages at once: CPUs, memory and GPUs are the spec's per-stage figures times
    the slots (GPUs rounded up: four quarter-GPU stages share one), the time limit the given one or the spec's."""
    memory = None
    if resources.memory is not None:
        number, unit = (resources.memory[:-1], resources.memory[-1]) if resources.memory[-1].isalpha() else \
            (resources.memory, "M")
        memory = f"{math.ceil(int(number) * MEGABYTES[unit] * slots)}M"
    return Request(slots, slots * max(1, math.ceil(resources.cpus)), math.ceil(slots * gpu_share - 1e-9), memory,
                   time_limit or resources.time_limit)


def slots_for(gpu_share: float, asked: int | None) -> int:
    """Stages one job trains side by side: as asked, else as many as share one GPU (four small nets), else one
    (a CPU job: one core per small-net stage is its fastest setting, and a cluster has many jobs)."""
    if asked is not None:
        return asked
    return max(1, math.floor(1 / gpu_share + 1e-9)) if gpu_share > 0 else 1


# Packing: which stages share a job.

@dataclass(frozen=True)
class Piece:
    """One job's share of a plan: its stages in plan order, and the earlier pieces (by index) it waits for."""

    keys: tuple[str, ...]
    after: frozenset[int] = frozenset()


def pack(stages: list[Stage], trunk: dict[str, str], limit: int | None = None) -> list[Piece]:
    """Cut the stages to run (in plan order, parents first; `trunk` maps each to its dense trunk's key) into
    pieces, listed so that a piece comes after every piece it waits for.

    A stage joins the latest piece that holds one of its parents, else the latest piece of its trunk, unless that
    piece would then wait for itself (through another), or the stage trains and the piece already holds `limit`
    stages that train; else it starts a piece. Stages that train nothing (masks, evaluations, measurements: seconds
    each) never start one of their own if a piece can take them. Without a limit a trunk is one piece: trunks
    never depend on each other.
    """
    piece_of: dict[str, int] = {}
    keys: list[list[str]] = []
    trunks: list[str] = []
    training: list[int] = []
    waits: list[set[int]] = []  # the pieces each piece waits for, directly or through others
    for stage in stages:
        parents = {piece_of[parent] for parent in stage.parents if parent in piece_of}

        def fits(index: int) -> bool:
            if stage.epochs and limit is not None and training[index] >= limit:
                return False
            return all(index not in waits[other] for other in parents - {index})

        mates = [index for index in reversed(range(len(keys))) if trunks[index] == trunk[stage.key]]
        chosen = next((index for index in sorted(parents, reverse=True) + mates if fits(index)), None)
        if chosen is None:
            chosen = len(keys)
            keys.append([])
            trunks.append(trunk[stage.key])
            training.append(0)
            waits.append(set())
        keys[chosen].append(stage.key)
        piece_of[stage.key] = chosen
        training[chosen] += bool(stage.epochs)
        before = set().union(*({other} | waits[other] for other in parents - {chosen}))
        for index, waited in enumerate(waits):
            if index == chosen or chosen in waited:
                waited |= before
    parents_of = {stage.key: stage.parents for stage in stages}
    after = [{piece_of[parent] for key in piece for parent in parents_of[key] if parent in piece_of} - {index}
             for index, piece in enumerate(keys)]
    order = _topological(after)
    renumber = {old: new for new, old in enumerate(order)}
    return [Piece(tuple(keys[old]), frozenset(renumber[index] for index in after[old])) for old in order]


def _topological(after: list[set[int]]) -> list[int]:
    """Indices in an order where each comes after those it waits for, the lowest index first among the ready."""
    order: list[int] = []
    placed: set[int] = set()
    while len(order) < len(after):
        ready = next(index for index in range(len(after)) if index not in placed and after[index] <= placed)
        order.append(ready)
        placed.add(ready)
    return order


def job_name(store_root: Path, keys: Iterable[str]) -> str:
    """`ltspec-` and 16 hex digits of its store and stages: the same piece of the same store, the same name."""
    text = json.dumps([str(store_root), sorted(keys)])
    return PREFIX + hashlib.sha256(text.encode()).hexdigest()[:16]


# The batch script and the scheduler's text.

def script(name: str, folder: Path, job: Request, site: tuple[str, ...], command: list[str],
           description: list[str], directory: Path) -> str:
    """The batch script of one job: its name, log, resources, site options, and the job entry point run with
    `exec`, so that the signals Slurm sends the batch step (`B:`) reach it. It is requeued on preemption and node
    failure (`--requeue`), and hears SIGUSR1 `WARNING_SECONDS` before its time limit, on which it requeues itself.
    `description`: comment lines saying which stages it runs; `directory`: where it runs (the submission's)."""
    options = [f"--job-name={name}", f"--output={folder / name}.%j.log", "--open-mode=append", f"--chdir={directory}",
               f"--cpus-per-task={job.cpus}", "--nodes=1", "--ntasks=1", "--requeue",
               f"--signal=B:USR1@{WARNING_SECONDS}"]
    options += [f"--gres=gpu:{job.gpus}"] if job.gpus else []
    options += [f"--mem={job.memory}"] if job.memory else []
    options += [f"--time={job.time_limit}"] if job.time_limit else []
    options += site
    lines = ["#!/bin/bash", *(f"#SBATCH {option}" for option in options),
             f"# {len(description)} stages, {job.slots} at a time:", *(f"#   {line}" for line in description),
             "export PYTHONUNBUFFERED=1", "exec " + shlex.join(command), ""]
    return "\n".join(lines)


def sbatch_command(script_path: Path, after: Iterable[str]) -> list[str]:
    """sbatch for a script, waiting for the jobs `after` to succeed and cancelled if one cannot."""
    waited = sorted(set(after), key=int)
    dependency = [f"--dependency=afterok:{':'.join(waited)}", "--kill-on-invalid-dep=yes"] if waited else []
    return ["sbatch", "--parsable", *dependency, str(script_path)]


def parse_sbatch(text: str) -> str:
    """The job id in `sbatch --parsable`'s answer (`1234` or `1234;cluster`)."""
    job = text.strip().split(";")[0]
    if not job.isdigit():
        raise SlurmError(f"sbatch answered `{text.strip()}`, not a job id")
    return job


SQUEUE_FORMAT = "%i|%j|%T|%r"


@dataclass(frozen=True)
class Queued:
    """A job in Slurm's queue: pending, running, or finishing."""

    job: str
    name: str
    state: str  # PENDING, RUNNING, COMPLETING, ...
    reason: str  # why it is pending: Dependency, Resources, Priority, BeginTime (requeued), ...


def squeue_command() -> list[str]:
    return ["squeue", "--me", "--noheader", f"--format={SQUEUE_FORMAT}"]


def parse_squeue(text: str) -> list[Queued]:
    """ltspec's jobs in `squeue --format=%i|%j|%T|%r` output (other jobs of the user are left out)."""
    jobs = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4 and parts[1].startswith(PREFIX):
            jobs.append(Queued(*parts))
    return jobs


def has_gpus(sinfo: str) -> bool:
    """Whether `sinfo --format=%G` lists a GPU among the nodes' generic resources (`gpu:a100:4(S:0-1)`)."""
    return any(part.startswith("gpu") for line in sinfo.split() for part in line.split(","))


def partition_of(site: tuple[str, ...]) -> str | None:
    """The partition the site's options name (`--partition=gpu`, `-p gpu`), the last one winning as in sbatch."""
    found = None
    for option in site:
        name, _, value = option.replace("=", " ", 1).partition(" ")
        if name in ("--partition", "-p"):
            found = value.strip()
    return found


# Talking to Slurm.

def _slurm(command: list[str], what: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=SLURM_TIMEOUT)
    except FileNotFoundError:
        raise SlurmError(f"`{command[0]}` is not on this machine's PATH: run ltspec on a Slurm login node (where "
                         "sbatch and squeue work), or pick another runner (--runner local or ray)") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"`{command[0]}` did not answer within {SLURM_TIMEOUT} s while {what}: is slurmctld "
                         "up? Try again later; nothing was submitted twice") from None
    if done.returncode != 0:
        said = " ".join((done.stderr or done.stdout).split())
        raise SlurmError(f"`{shlex.join(command)}` failed while {what}: {said}")
    return done.stdout


def queue() -> list[Queued]:
    """This user's ltspec jobs in Slurm's queue."""
    return parse_squeue(_slurm(squeue_command(), "listing the queue"))


def partition_has_gpus(site: tuple[str, ...]) -> bool:
    partition = ["--partition", partition_of(site)] if partition_of(site) else []
    return has_gpus(_slurm(["sinfo", "--noheader", "--format=%G", *partition], "asking for the nodes' GPUs"))


# Manifests and events: what a job holds, and what it did.

def folder_of(store_root: Path) -> Path:
    return Path(store_root) / FOLDER


def held(store_root: Path, jobs: list[Queued], known: dict[str, list[str]] | None = None) -> dict[str, Queued]:
    """The stages held by live jobs of this store: stage key -> its job (a job whose manifest is not in this store
    belongs to another store). `known`: the stages of the manifests read before, by job name (they never change)."""
    known = {} if known is None else known
    found = {}
    for job in jobs:
        if job.name not in known:
            known[job.name] = (_read_json(folder_of(store_root) / f"{job.name}.json") or {}).get("run", [])
        for key in known[job.name]:
            found[key] = job
    return found


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_events(folder: Path) -> list[dict]:
    """Every job's events in this folder, oldest first (a line cut short by a kill is skipped); each names its
    job's name and id."""
    events = []
    for path in folder.glob(f"{PREFIX}*.events"):
        for line in path.read_text(errors="replace").splitlines():
            try:
                events.append({**json.loads(line), "name": path.stem})
            except ValueError:
                continue
    return sorted(events, key=lambda event: event.get("time", 0))


# Status: the store and the queue together.

@dataclass(frozen=True)
class StageState:
    """Where a stage stands on Slurm: done, running, queued, failed, blocked (a parent failed), stopped (its job
    ended while it ran: cancelled, killed, timed out; the next submission resumes it) or todo."""

    state: str
    job: str | None = None
    detail: str = ""
    log: Path | None = None

    def mark(self) -> str:
        """A short label for the plan's tree: `queued (job 12: Dependency)`, `failed (…log)`."""
        job = f"job {self.job}" if self.job else ""
        detail = ": ".join(part for part in (job, self.detail) if part)
        return f"{self.state} ({detail})" if detail else self.state


def states(plan: Plan, done: set[str], store_root: Path, jobs: list[Queued]) -> dict[str, StageState]:
    """Every stage's state from the store (`done`), the live jobs and the jobs' events."""
    folder = folder_of(store_root)
    live = held(store_root, jobs)
    last: dict[str, dict] = {}
    for event in read_events(folder) if folder.is_dir() else []:
        if event["event"] in ("start", "end"):
            last[event["stage"]] = event
    found: dict[str, StageState] = {}
    for stage in plan.stages:
        event = last.get(stage.key)
        if stage.key in done:
            found[stage.key] = StageState("done")
        elif stage.key in live:
            job = live[stage.key]
            running = job.state == "RUNNING" and event is not None and event["event"] == "start" and \
                event["job"] == job.job
            found[stage.key] = StageState("running", job.job) if running else \
                StageState("queued", job.job, job.reason if job.state == "PENDING" else "its job is running")
        elif event is not None and event["event"] == "end" and event["outcome"] == "failed":
            found[stage.key] = StageState("failed", event["job"], event.get("message") or "",
                                          folder / f"{event['name']}.{event['job']}.log")
        elif any(found[parent].state in ("failed", "blocked") for parent in stage.parents if parent in found):
            found[stage.key] = StageState("blocked", detail="a stage it needs failed")
        elif event is not None and event["event"] == "start":
            found[stage.key] = StageState("stopped", event["job"], "its job ended while it ran; the next "
                                          "submission resumes it", folder / f"{event['name']}.{event['job']}.log")
        else:
            found[stage.key] = StageState("todo")
    return found


def plan_states(plan: Plan, done: set[str], store_root: Path) -> dict[str, StageState] | None:
    """The Slurm state of every stage when this store has had Slurm jobs, else None (no squeue is run)."""
    if not folder_of(store_root).is_dir():
        return None
    return states(plan, done, store_root, queue())


# Submission.

@dataclass
class Submission:
    """What one `ltspec run --runner slurm` did: jobs it submitted (job id -> its stages), stages already held by
    live jobs, stages found done."""

    jobs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)  # stage key -> job id
    done: list[str] = field(default_factory=list)


def submit(loaded: LoadedSpec, plan: Plan, *, site: tuple[str, ...] = (), device: str = "auto",
           slots: int | None = None,
           stages_per_job: int | None = None, gpu_share: float | None = None, time_limit: str | None = None,
           console: Console | None = None, plan_json: dict | None = None) -> Submission:
    """Submit every stage of the plan that is neither done nor held by a live job; returns what was submitted.

    Stages done in the store are logged to this experiment where it lacks them, as the other runners do. The trunk
    runs are made here, before any job starts, so that no two jobs race to make one. Submissions are serialised
    by a lock in the store's Slurm folder, so two at once never submit a stage twice.
    """
    import torch
    from rich.console import Console

    from ltspec import tracking
    from ltspec.runners.common import (Workspace, close_trunks, connect, gpus_per_stage, local_file, located,
                                       stage_threads)
    from ltspec.stages import Context, run_stage
    from ltspec.store import Store

    console = console or Console()
    spec = loaded.spec
    queue()  # no Slurm here: say so before anything is written
    if local_file(spec.tracking.uri):
        console.print(f"note: the tracking URI `{spec.tracking.uri}` is a file: Slurm jobs on other "
                      "nodes cannot reach it unless it is on a shared filesystem, and many jobs writing one sqlite "
                      "file at once wait on its lock or fail. Run an MLflow server on PostgreSQL (README: On a "
                      "Slurm cluster) and set `[tracking] uri = \"http://HOST:5000\"`.", markup=False)
    store = Store(Path(spec.storage.root).resolve())
    folder = folder_of(store.root)
    folder.mkdir(parents=True, exist_ok=True)
    stages = {stage.key: located(stage) for stage in plan.stages}
    tracker = connect(loaded, plan)
    driver = Context(store=store, device=torch.device("cpu"), stages=stages, tracker=tracker,
                     runs=tracking.runs_by_stage(tracker))
    submission = Submission()
    with open(folder / ".submit.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        live = {key: job.job for key, job in held(store.root, queue()).items()}
        pending = []
        for stage in plan.stages:
            if store.is_complete(stage.key):
                run_stage(stages[stage.key], driver)
                submission.done.append(stage.key)
            elif stage.key in live:
                submission.held[stage.key] = live[stage.key]
            else:
                pending.append(stages[stage.key])
        if not pending:
            return submission
        for trunk in dict.fromkeys(stage.trunk for stage in pending):
            driver.trunk_runs[trunk] = tracking.trunk_run(tracker, stages[trunk])
        close_trunks(tracker, driver.trunk_runs, loaded, plan_json)
        wants_gpus = device.startswith("cuda") or device == "auto" and partition_has_gpus(site)
        share = gpu_share if gpu_share is not None else spec.resources.gpu_share
        source = {"path": str(loaded.path), "text": loaded.path.read_text(), "overrides": list(loaded.overrides)}
        workspace = Workspace.of(store, tracker, stage_threads(spec), spec.resources.deterministic)
        job = Job(plan, stages, folder, workspace, dict(driver.trunk_runs), source)
        ids: list[str] = []
        for piece in pack(pending, {stage.key: stage.trunk for stage in pending}, stages_per_job):
            arch = stages[stages[piece.keys[0]].trunk].config.model.arch
            stage_share = gpus_per_stage(arch, share, 1 if wants_gpus else 0)
            trains = sum(bool(stages[key].epochs) for key in piece.keys)
            asked = request(spec.resources, min(slots_for(stage_share, slots), max(trains, 1)), stage_share,
                            time_limit)
            after = {ids[index] for index in piece.after} | {live[parent] for key in piece.keys
                                                             for parent in stages[key].parents if parent in live}
            ids.append(parse_sbatch(_slurm(sbatch_command(job.write(piece.keys, asked, site), after),
                                           "submitting a job")))
            submission.jobs[ids[-1]] = piece.keys
    return submission


@dataclass(frozen=True)
class Job:
    """What every job of one submission shares, and the writing of one job's manifest and script."""

    plan: Plan
    stages: dict[str, Stage]  # the plan's, their data folders made absolute
    folder: Path
    workspace: object  # `ltspec.runners.common.Workspace`
    trunk_runs: dict[str, str]
    source: dict  # the spec as submitted: its path, its text, the command line's overrides

    def write(self, keys: tuple[str, ...], asked: Request, site: tuple[str, ...]) -> Path:
        """Write the manifest and the script of the job running `keys`; returns the script's path. The manifest
        holds the spec's text as submitted (the job compiles it again, in the submission's working directory, and
        checks that it yields these keys, so an edit of the file since changes nothing) and which of the job's
        stages a stage outside it needs (the job fails when one of those did not finish)."""
        from dataclasses import asdict

        name = job_name(Path(self.workspace.store_root), keys)
        inside = set(keys)
        outside = {parent for stage in self.plan.stages if stage.key not in inside for parent in stage.parents}
        manifest = {"name": name, "run": list(keys), "needed": sorted(outside & inside), "slots": asked.slots,
                    "device": "cuda" if asked.gpus else "cpu", "workspace": asdict(self.workspace),
                    "trunk_runs": {trunk: self.trunk_runs[trunk] for trunk in {self.stages[key].trunk for key in keys}},
                    "spec": self.source}
        _write(self.folder / f"{name}.json", json.dumps(manifest, indent=1, sort_keys=True))
        command = [sys.executable, "-m", "ltspec.runners.slurm_job", str(self.folder / f"{name}.json")]
        text = script(name, self.folder, asked, site, command, [self.stages[key].describe() for key in keys],
                      Path.cwd())
        _write(self.folder / f"{name}.sh", text)
        return self.folder / f"{name}.sh"


def _write(path: Path, text: str) -> None:
    from ltspec.files import write_atomically

    write_atomically(path, lambda file: file.write(text.encode()))


# Following the jobs: the local runner's display, fed by the jobs' events.

def follow(plan: Plan, store_root: Path, console: Console | None = None, poll_seconds: float = 2.0) -> Summary:
    """Show the jobs' progress with the local runner's display until no live job holds a stage of the plan, and
    return what became of each stage. Ctrl-C stops following; the jobs go on."""
    import time

    from rich.console import Console
    from rich.progress import Progress

    from ltspec.plan.status import status
    from ltspec.runners.common import progress_columns
    from ltspec.runners.local import Display
    from ltspec.store import Store

    store = Store(Path(store_root))
    folder = folder_of(store.root)
    offsets = {path: path.stat().st_size for path in folder.glob(f"{PREFIX}*.events")}
    in_plan = {stage.key for stage in plan.stages}
    manifests: dict[str, list[str]] = {}
    with Progress(*progress_columns(), console=console or Console(), transient=False) as progress:
        display = Display(progress, plan, status(plan, store).epochs_left)
        settled: set[str] = set()
        while True:
            live = {key for key in held(store.root, queue(), manifests) if key in in_plan}
            for event in _new_events(folder, offsets):
                key = event["stage"]
                if key not in in_plan or key in settled:
                    continue
                if event["event"] in ("start", "epoch") and key not in display.bars:
                    display.start(plan.stage(key))
                if event["event"] == "epoch":
                    display.epoch(key, event["epoch"], event["values"])
                elif event["event"] == "end":
                    display.end(key, event["outcome"], event.get("message"))
                    settled.add(key)
            if not live:
                break
            time.sleep(poll_seconds)
        done = {key for key in in_plan if store.is_complete(key)}
        ended = states(plan, done, store.root, [])
        for stage in plan.stages:
            if stage.key not in settled:
                state = ended[stage.key]
                if state.state in ("done", "blocked"):
                    display.end(stage.key, state.state)
                else:
                    display.end(stage.key, "failed", f"{stage.describe()}: {UNFINISHED[state.state]}")
    return display.summary


UNFINISHED = {  # a stage that neither finished nor failed by the time its job left the queue
    "failed": "it failed (see `ltspec plan`)",
    "stopped": "its job ended while it trained (cancelled, killed or timed out); the next submission resumes it",
    "todo": "its job ended before it started (cancelled?); the next submission submits it again"}


def _new_events(folder: Path, offsets: dict[Path, int]) -> list[dict]:
    """The events written since the last call (whole lines only), in file order."""
    events = []
    for path in sorted(folder.glob(f"{PREFIX}*.events")):
        with open(path, "rb") as file:
            file.seek(offsets.get(path, 0))
            data = file.read()
        whole = data[:data.rfind(b"\n") + 1]
        offsets[path] = offsets.get(path, 0) + len(whole)
        for line in whole.splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events



def launch(loaded: LoadedSpec, plan: Plan, options, console: Console | None = None,
           plan_json: dict | None = None) -> Summary | None:
    """`ltspec run --runner slurm` (`ltspec.runners.launch`): submit, say what was submitted and where its logs go,
    and with `options.wait` follow the jobs to their end and return what became of every stage (None when not
    followed)."""
    from rich.console import Console

    console = console or Console()
    store_root = Path(loaded.spec.storage.root).resolve()
    submission = submit(loaded, plan, site=options.sbatch, device=options.device, slots=options.slots,
                        stages_per_job=options.stages_per_job, gpu_share=options.gpu_share,
                        time_limit=options.time_limit, console=console, plan_json=plan_json)
    count = sum(len(keys) for keys in submission.jobs.values())
    jobs = ", ".join(submission.jobs) or "none"
    console.print(f"submitted {len(submission.jobs)} Slurm jobs for {count} stages (jobs {jobs}); "
                  f"{len(submission.held)} stages were already queued or running, {len(submission.done)} done; "
                  f"scripts and logs in {folder_of(store_root)}", markup=False)
    if not options.wait:
        console.print("status: `ltspec plan SPEC`; follow them: the same command with --wait (it submits nothing "
                      "twice)", markup=False)
        return None
    try:
        return follow(plan, store_root, console)
    except KeyboardInterrupt:
        console.print("stopped following; the jobs go on (status: `ltspec plan SPEC`)", markup=False)
        return None
