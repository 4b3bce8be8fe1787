"""One Slurm job of ltspec: the stages its manifest lists, run with the local runner's machinery.

`python -m ltspec.runners.slurm_job MANIFEST` is the last line of every batch script that `ltspec run --runner
slurm` writes (`ltspec.runners.slurm`). The manifest holds everything the job needs, so the job never reads the
spec file (which may have changed since): the spec's text as submitted, which it compiles again (and checks that
the stages to run are among the keys it yields), the stages to run, where the store and the MLflow experiment are,
the trunk runs its stage runs go under, the device and how many stages to train side by side.

A stage runs exactly as on the local runner (`run_stages`, on `resources.cpus` threads), so its masks and metrics
equal the local runner's. Each start, epoch and end is appended to the job's events file, which `ltspec run
--wait` follows and `ltspec plan` reads. Signals:
- SIGTERM (scancel, preemption, a requeue) is a preemption: the running stages keep their last finished epoch in
  their checkpoints and their MLflow runs are marked KILLED; the job exits 143 and the next attempt (a requeue, or
  the next submission) resumes them;
- SIGUSR1, which the script asks Slurm to send before the time limit, makes the job requeue itself (`scontrol
  requeue`: Slurm then sends the SIGTERM above and queues the job again, its dependents still waiting); where the
  site forbids requeueing, the job stops as on a SIGTERM and the next submission resumes it.

Exit status: 0 when every stage that another stage of the plan waits for is done (a stage no other needs may have
failed: the events and `ltspec plan` say so), 1 when one is not (Slurm then cancels the jobs that wait on this one),
143 on SIGTERM, 2 for a manifest this ltspec cannot run.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch
from rich.console import Console

from ltspec import plugins
from ltspec.faults import EnvironmentFault
from ltspec.plan import Plan, Stage, compile_plan
from ltspec.preemption import exit_code, preemptible
from ltspec.runners.common import Workspace, close_trunks, located, threads
from ltspec.runners.local import gpu_memory, run_stages
from ltspec.runners.slots import Layout, slots
from ltspec.spec import SpecError, parse_spec
from ltspec.stages import Context
from ltspec.store import Store


def main(manifest_path: str) -> int:
    path = Path(manifest_path)
    try:
        manifest = json.loads(path.read_text())
        stages = compiled(manifest["spec"], manifest["run"])
    except (OSError, ValueError, KeyError, SpecError) as error:
        print(f"error: cannot run the manifest {path}: {error}", file=sys.stderr)
        return 2
    job = os.environ.get("SLURM_JOB_ID", "local")
    workspace = Workspace(**manifest["workspace"])
    piece = Plan(manifest["name"], "", tuple(stages[key] for key in manifest["run"]), (), ())
    attempt = int(os.environ.get("SLURM_RESTART_COUNT", "0")) + 1
    print(f"ltspec job {manifest['name']} (Slurm job {job}, attempt {attempt}) on {socket.gethostname()}: "
          f"{len(piece.stages)} stages, {manifest['slots']} at a time on {manifest['device']}", flush=True)
    plugins.load()  # a plugin's model, dataset or generator may be named
    tracker = workspace.tracker()
    ctx = Context(store=Store(Path(workspace.store_root)), device=torch.device(manifest["device"]), stages=stages,
                  tracker=tracker, trunk_runs=dict(manifest["trunk_runs"]))
    signal.signal(signal.SIGUSR1, _requeue)
    with open(path.with_suffix(".events"), "a") as events:
        def record(event: dict) -> None:
            events.write(json.dumps({**event, "job": job, "time": time.time()}) + "\n")
            events.flush()
            if event["event"] != "epoch":
                said = f" {event['outcome']}" if event["event"] == "end" else ""
                print(f"{time.strftime('%H:%M:%S')} {event['event']}{said}: {stages[event['stage']].describe()}",
                      flush=True)

        try:
            with preemptible(), threads(workspace.threads):
                placed = Layout(slots([manifest["device"]], manifest["slots"]))
                summary = run_stages(piece, ctx, placed, gpu_memory(placed), Console(), record,
                                     deterministic=workspace.deterministic)
        except KeyboardInterrupt as interrupt:
            print("stopped: the running stages keep their checkpoints and their MLflow runs are marked KILLED; a "
                  "requeue or the next submission resumes them", flush=True)
            return exit_code(interrupt)
        except EnvironmentFault as fault:
            print(f"error: {fault}", file=sys.stderr, flush=True)
            return 1
        finally:
            if tracker is not None:
                close_trunks(tracker, ctx.trunk_runs, None, None)
    used = sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for field in ("ru_utime", "ru_stime"))
    print(f"{len(summary.ran)} stages ran, {len(summary.done)} were already done, {len(summary.failed)} failed, "
          f"{len(summary.blocked)} skipped after a failure; {used:.1f} s of CPU", flush=True)
    unfinished = [key for key in manifest["needed"] if not ctx.store.is_complete(key)]
    if unfinished:
        print(f"{len(unfinished)} stages that other jobs wait for did not finish: Slurm cancels those jobs",
              flush=True)
    return 1 if unfinished else 0


def compiled(source: dict, keys: list[str]) -> dict[str, Stage]:
    """The stages of the spec as submitted (its text and overrides), data folders resolved against this working
    directory (the submission's: the script's `--chdir`); refused unless they hold `keys` (another version of
    ltspec may compile the spec to other stages)."""
    plan = compile_plan(parse_spec(source["text"], source["path"], tuple(source["overrides"])))
    stages = {stage.key: located(stage) for stage in plan.stages}
    missing = [key for key in keys if key not in stages]
    if missing:
        raise ValueError(f"the spec as submitted compiles to other stages with this ltspec ({len(missing)} of the "
                         "job's are not among them): submit it again")
    return stages


def _requeue(signum, frame) -> None:
    """The time limit is near: requeue this job (Slurm then stops it with SIGTERM and queues it again), or, where
    that is refused, stop as on a SIGTERM."""
    job = os.environ.get("SLURM_JOB_ID")
    done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60) if job else None
    if done is not None and done.returncode == 0:
        print("time limit near: requeued; the stages resume in the next attempt", flush=True)
        return
    print(f"time limit near, and the job cannot requeue itself ({(done.stderr if done else 'not a Slurm job').strip()}"
          "): stopping; the next submission resumes it", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
