"""Worker processes for the local runner: independent stages side by side on a multi-core CPU or on GPUs.

A small net cannot use more than one core per stage (its steps are too small to split: benchmarks/threads.py), so
on a CPU with N cores the local runner trains N stages at once, one process each: threads would share one GIL,
and a small net's step is mostly Python. Nor can it keep a GPU busy, so several of its stages share a GPU, one
process each (`ltspec.runners.slots`): every worker is pinned to the device of its slot, and before each stage on a
shared GPU it sets the memory cap the runner sends with the stage. A stage runs in a worker exactly as it would in
the runner's own process (`run_stage`, with the same intra-op threads and GPU settings), so the masks and metrics
are those of a one-at-a-time run; only the order in which stages finish changes.

Workers are forked from a server process that imported torch, MLflow and ltspec once (multiprocessing's
`forkserver`), so each starts in milliseconds and none inherits the runner's threads or locks. The runner sends a
worker one stage key at a time over its pipe; the worker answers with each finished epoch (for the progress bars)
and the stage's outcome. Ctrl-C reaches the runner only (workers ignore SIGINT); the runner stops its workers with
SIGTERM, which each answers like a preemption: the stage's finished epochs stay in its checkpoint and its MLflow run
is marked KILLED. A worker that dies (the OOM killer, say) fails only the stage it was running; a new worker
takes its place on the same device.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

import torch

from ltspec import plugins, preemption
from ltspec.faults import EnvironmentFault
from ltspec.plan import Stage
from ltspec.runners.common import Workspace, reproducible
from ltspec.runners.slots import Slot
from ltspec.stages import Context, StageFailed, run_stage
from ltspec.store import Store

PR_SET_PDEATHSIG = 1  # prctl(2)
STOP_GRACE_SECONDS = 60  # stopped workers writing their last checkpoint and marking their runs KILLED


@dataclass(frozen=True)
class Job:
    """What every worker of one run needs, sent to it once when it starts."""

    workspace: Workspace
    stages: dict[str, Stage]
    runs: dict[str, list] | None  # the runner's snapshot of the experiment's stage runs
    trunk_runs: dict[str, str]  # each trunk's parent run, created by the runner before any worker starts


def start_server() -> multiprocessing.context.BaseContext:
    """Start the fork server if it is not running (its imports of torch, MLflow and ltspec take seconds); `ltspec
    run` starts it first thing, so that those imports overlap the runner's own start-up."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    multiprocessing.forkserver.ensure_running()
    return context


def serve(job: Job, device: str, pipe: Connection) -> None:
    """A worker's life on `device`: run each stage the runner sends, a (key, memory cap) pair, until it sends None,
    reporting epochs and outcomes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C goes to the runner, which stops us
    _die_with_parent()
    try:
        with preemption.preemptible(), reproducible(job.workspace.deterministic):
            plugins.load()  # a plugin's model, dataset or generator may be named
            torch.set_num_threads(job.workspace.threads)
            where = torch.device(device)
            if where.type == "cuda":
                torch.cuda.set_device(where)  # anything that names no device (pinned host memory) goes here too
            ctx = Context(store=Store(Path(job.workspace.store_root)), device=where, stages=job.stages,
                          tracker=job.workspace.tracker(), runs=job.runs, trunk_runs=dict(job.trunk_runs),
                          on_epoch=lambda stage, epoch, values: pipe.send(("epoch", stage.key, epoch, values)))
            while (message := pipe.recv()) is not None:
                key, cap = message
                if cap is not None:
                    _cap_memory(where, cap)
                try:
                    _, ran = run_stage(job.stages[key], ctx)
                    pipe.send(("end", key, "ran" if ran else "done", None))
                except StageFailed as failure:
                    pipe.send(("end", key, "failed", str(failure)))
                except EnvironmentFault as fault:  # the machine's (a full disk, say): it stops the whole run
                    pipe.send(("fault", key, fault))
                    return
    except (KeyboardInterrupt, EOFError):  # stopped by the runner (its run is marked KILLED), or the runner is gone
        return


def _cap_memory(device: torch.device, fraction: float) -> None:
    """Let this process's caching allocator hold at most `fraction` of the GPU, its cached blocks of an earlier stage
    given back first (they would count against a smaller cap, and the neighbours may use them)."""
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(fraction, device)


def _die_with_parent() -> None:
    """SIGKILL this worker when its parent, the fork server, exits, as it does when the runner dies: a SIGKILLed
    runner takes its workers with it, as it takes the stage it runs in-process (Linux; elsewhere a worker
    notices at its next message, when the pipe is gone)."""
    if sys.platform == "linux":
        parent = os.getppid()
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the fork server was gone before the request took effect
            os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Worker:
    process: multiprocessing.process.BaseProcess
    pipe: Connection
    slot: Slot
    stage: str | None = None  # the key of the stage it runs, None while idle


class Workers:
    """A pool of worker processes for one run, at most one per slot, used as a context manager: leaving it normally
    lets the workers finish and exit; leaving it by an exception (an interrupt) stops them with SIGTERM and waits
    for their cleanup. The first `started` slots get their worker at once (their start-up overlaps), the others
    when a stage first needs one: a run with fewer stages left than slots never starts a worker it cannot use."""

    def __init__(self, slots: tuple[Slot, ...], job: Job, started: int):
        self.job, self.slots = job, slots
        self.context = start_server()
        self.workers = [self._start(slot) for slot in slots[:started]]

    def _start(self, slot: Slot) -> Worker:
        mine, theirs = self.context.Pipe()
        process = self.context.Process(target=serve, args=(self.job, slot.device, theirs), name="ltspec-worker",
                                       daemon=True)
        process.start()
        theirs.close()
        return Worker(process, mine, slot)

    def idle(self, device: str) -> Worker:
        """A worker on `device` free for a stage: an idle one (replaced first if it died while idle), else a new one
        in a slot of the device that has none yet. The caller knows that the device has a slot free."""
        for worker in self.workers:
            if worker.stage is None and worker.slot.device == device:
                return worker if worker.process.is_alive() else self._replace(worker)
        used = {worker.slot for worker in self.workers}
        self.workers.append(self._start(next(slot for slot in self.slots if slot.device == device and
                                             slot not in used)))
        return self.workers[-1]

    def busy(self) -> bool:
        return any(worker.stage is not None for worker in self.workers)

    def send(self, worker: Worker, key: str, cap: float | None) -> None:
        """Start the stage `key` on the worker, its memory capped at `cap` of its GPU (None: no cap)."""
        worker.stage = key
        worker.pipe.send((key, cap))

    def messages(self, on_epoch: Callable[[str, int, dict], None]) -> list[tuple[str, str, str | None]]:
        """Wait for the busy workers' next messages; passes each epoch to `on_epoch` and returns the stages that
        ended as (key, status, message), a dead worker's stage among them as failed (and a new worker started).
        A fault of the machine in a worker (`EnvironmentFault`) is raised here, as the runner would have raised it
        running the stage itself."""
        ended = []
        busy = [worker for worker in self.workers if worker.stage is not None]
        ready = wait([worker.pipe for worker in busy] + [worker.process.sentinel for worker in busy])
        for worker in busy:
            died = worker.process.sentinel in ready
            while worker.stage is not None and worker.pipe in ready and worker.pipe.poll():
                try:
                    message = worker.pipe.recv()
                except EOFError:  # its end of the pipe closed: the process is gone
                    died = True
                    break
                if message[0] == "epoch":
                    on_epoch(*message[1:])
                elif message[0] == "fault":
                    raise message[2]
                else:
                    ended.append(message[1:])
                    worker.stage = None
            if worker.stage is not None and died:
                self._replace(worker)
                ended.append((worker.stage, "failed", f"stage {worker.stage[:10]}: its worker process died "
                              f"(exit code {worker.process.exitcode}; killed, or out of memory?)"))
        return ended

    def _replace(self, dead: Worker) -> Worker:
        """Reap a worker that died and start a new one in its place."""
        dead.process.join()
        new = self.workers[self.workers.index(dead)] = self._start(dead.slot)
        return new

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            for worker in self.workers:
                with contextlib.suppress(BrokenPipeError):  # one that died idle has nothing to finish
                    worker.pipe.send(None)
        else:
            for worker in self.workers:
                if worker.process.is_alive():
                    os.kill(worker.process.pid, signal.SIGTERM)
        for worker in self.workers:
            worker.process.join(STOP_GRACE_SECONDS)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
