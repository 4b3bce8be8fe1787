"""Runners: where and when a plan's stages run, never what a stage does (that is `ltspec.stages`).

Each runner is one module with `launch(loaded, plan, options, console=, plan_json=) -> Summary` (Slurm's returns
None when it submitted without following) and one line in `RUNNERS`; `ltspec run --runner NAME` takes its names from there. A runner module is imported only when it is
used: Ray's import alone takes seconds.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

RUNNERS = {
    "local": "this machine: stages in dependency order, side by side in worker processes",
    "ray": "a Ray cluster: each stage a task, on one machine or many",
    "slurm": "Slurm batch jobs, a job per dense trunk by default, their dependencies the DAG's",
}


@dataclass(frozen=True)
class Options:
    """How to run a plan, as the command line says it; nothing here enters a stage key."""

    device: str = "auto"
    workers: int | None = 1  # stages at once per device (local runner); None: fill the machine
    gpus: tuple[int, ...] | None = None  # the GPUs the local runner spreads over; None: every visible one
    address: str | None = None  # a Ray cluster to join
    gpu_share: float | None = None  # GPUs per stage on Ray and Slurm; None: the spec's, or the architecture's default
    wait: bool = False  # follow the Slurm jobs to their end
    slots: int | None = None  # stages one Slurm job trains side by side; None: four small nets on a GPU, else one
    stages_per_job: int | None = None  # training stages per Slurm job at most; None: a job per dense trunk
    time_limit: str | None = None  # each Slurm job's (sbatch --time); None: the spec's
    sbatch: tuple[str, ...] = ()  # the site's sbatch options for every job: partition, account, QoS, more


def launch(name: str, loaded, plan, options: Options, **display):
    """Run `plan` with the runner called `name` (a key of `RUNNERS`)."""
    if name not in RUNNERS:
        raise ValueError(f"unknown runner `{name}`; use {' or '.join(RUNNERS)}")
    return importlib.import_module(f"ltspec.runners.{name}").launch(loaded, plan, options, **display)
