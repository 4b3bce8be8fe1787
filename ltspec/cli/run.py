"""`ltspec run`: train what is not done yet, resume what was interrupted, log every stage to MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ltspec.cli.report import write_reports
from ltspec.cli.shell import OnlyOption, OptionalSpecsArg, RehearseOption, fail, fault, frozen_at_exit, load_all, \
    or_quickstart, say, shown, status
from ltspec.runners import RUNNERS, Options


@frozen_at_exit
def run(specs: OptionalSpecsArg = None, only: OnlyOption = [],
        device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
        runner: Annotated[str, typer.Option(help="Where stages run: " + "; ".join(
            f"{name} ({what})" for name, what in RUNNERS.items()) + ".")] = "local",
        workers: Annotated[Optional[int], typer.Option(
            min=1, help="Stages at once on the local runner, per device [default: on a CPU one per "
            "`resources.cpus` cores; on each GPU as many as `resources.gpu_share` packs].")] = None,
        gpus: Annotated[Optional[str], typer.Option(
            help="GPUs the local runner spreads over, e.g. 0,2 [default: every visible GPU].")] = None,
        address: Annotated[Optional[str], typer.Option(help="Ray cluster address (ray runner).")] = None,
        gpu_share: Annotated[Optional[float], typer.Option(help="GPUs per stage on Ray and Slurm; overrides the "
                                                           "spec.")] = None,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Start without asking, however long the estimate.")]
        = False,
        wait: Annotated[bool, typer.Option("--wait", help="Slurm: follow the jobs until they end.")] = False,
        slots: Annotated[Optional[int], typer.Option(min=1, help="Slurm: stages one job trains side by side "
                                                     "[default: 4 small nets on a GPU, else 1].")] = None,
        stages_per_job: Annotated[Optional[int], typer.Option(min=1, help="Slurm: at most this many training "
                                                              "stages per job [default: a job per dense trunk].")]
        = None,
        partition: Annotated[Optional[str], typer.Option(help="Slurm partition.")] = None,
        account: Annotated[Optional[str], typer.Option(help="Slurm account.")] = None,
        qos: Annotated[Optional[str], typer.Option(help="Slurm QoS.")] = None,
        sbatch: Annotated[list[str], typer.Option(metavar="OPTION", help="Slurm: one more sbatch option for every "
                                                  "job (`--sbatch=--constraint=a100`); repeat it.")] = [],
        site: Annotated[Optional[Path], typer.Option(help="Slurm: a file of sbatch options, one per line, for "
                                                     "every job (the cluster's settings).")] = None,
        time_limit: Annotated[Optional[str], typer.Option(help="Slurm: each job's time limit (sbatch --time); "
                                                          "overrides the spec's.")] = None,
        rehearse: RehearseOption = False):
    """Execute the plan: train what is not done yet, resume what was interrupted, log every stage to MLflow.

    Several specs run one after another: a stage that an earlier spec trained in the same store is found done and
    logged to the later spec's experiment as reused, so shared work trains once and each spec keeps its runs.
    `--rehearse` runs the specs' rehearsals, then writes their reports (on Slurm, with `--wait`)."""
    from rich.console import Console

    if runner not in RUNNERS:
        raise fail(f"unknown runner `{runner}`; use {' or '.join(RUNNERS)}")
    slurm = slurm_options(runner, wait=wait, slots=slots, stages_per_job=stages_per_job, time_limit=time_limit,
                          partition=partition, account=account, qos=qos, sbatch=sbatch, site=site)
    chosen_gpus = parse_gpus_option(gpus, runner)
    loaded_specs = load_all(or_quickstart(specs), only, rehearse=rehearse)
    console = Console()
    if len(loaded_specs) > 1:
        from ltspec.plan.combine import combine

        combined = combine([compiled for _, _, compiled in loaded_specs], "")
        console.print(f"{len(loaded_specs)} specs: {len(combined.plan.stages)} stages, {combined.plan.epochs} epochs "
                      f"in the combined plan ({combined.separate_epochs} if run apart)")
    options = Options(device=device, address=address, gpu_share=gpu_share, gpus=chosen_gpus,
                      workers=look_before_running(loaded_specs, device, runner, workers, yes, chosen_gpus), **slurm)
    from ltspec.preemption import cause, exit_code, preemptible

    ok = True
    try:
        with preemptible():
            for spec, loaded, compiled in loaded_specs:
                ok &= run_one(spec, loaded, compiled, console, runner, options)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM / SIGHUP (a scheduler's preemption)
        say("interrupted:", "yellow", f"by {cause(interrupt).name}; finished epochs are kept in the store's "
            "checkpoints and the current MLflow run is marked KILLED; run the same command again to resume", err=True)
        raise typer.Exit(exit_code(interrupt)) from None
    if rehearse and (runner != "slurm" or wait):  # submitted Slurm jobs have not run yet
        ok &= not max(write_reports(loaded_specs, bool(only), None, None, console))
    if not ok:
        raise typer.Exit(1)


def slurm_options(runner: str, *, partition, account, qos, sbatch: list[str], site: Path | None, **options) -> dict:
    """The Slurm runner's `Options` fields, the site file read; refused with another runner, which ignores them."""
    given = {"wait": options["wait"], "slots": options["slots"], "stages-per-job": options["stages_per_job"],
             "time-limit": options["time_limit"], "partition": partition, "account": account, "qos": qos,
             "sbatch": sbatch, "site": site}
    named = [name for name, value in given.items() if value]
    if runner != "slurm":
        if named:
            raise fail(f"--{', --'.join(named)} {'is' if len(named) == 1 else 'are'} for --runner slurm only")
        return {}
    from ltspec.runners.slurm import read_site, site_options

    try:
        lines = read_site(site) if site is not None else ()
    except (ValueError, OSError) as error:
        raise fail(str(error)) from None
    return {**options, "sbatch": site_options(partition, account, qos, (*lines, *sbatch))}


def parse_gpus_option(text: str | None, runner: str) -> tuple[int, ...] | None:
    """`--gpus 0,2` as (0, 2), for the local runner only."""
    from ltspec.runners.slots import parse_gpus

    if text is None:
        return None
    if runner != "local":
        raise fail("--gpus chooses the GPUs of the local runner; Ray places stages on its cluster's GPUs itself")
    try:
        return parse_gpus(text)
    except ValueError as error:
        raise fail(str(error)) from None


def look_before_running(loaded_specs: list[tuple], device: str, runner: str, workers: int | None, yes: bool,
                        gpus: tuple[int, ...] | None) -> int | None:
    """`ltspec.preflight.prepare_run`, shown: the estimate printed, a question before more than a day on a CPU,
    then the downloads the specs ask for. Returns the local runner's stages per device (None: fill the machine)."""
    from ltspec.faults import EnvironmentFault
    from ltspec.preflight import DAY, DataMissing, fetch_datasets, prepare_run

    try:
        prepared = prepare_run(loaded_specs, device, runner, workers, gpus)
        found = prepared.estimate
        if found is not None:
            say("estimate:", "cyan", found.describe())
            if found.device == "cpu" and (found.wall_seconds or 0) > DAY and not yes:
                typer.echo("This plan is GPU work: on a GPU it takes a small fraction of that. Run it on a machine "
                           "with a GPU (--device cuda), or on a Ray cluster (--runner ray).")
                if not typer.confirm("Start it on the CPU anyway?", default=False):
                    raise typer.Exit(1)
        fetch_datasets(prepared.fetch)
    except DataMissing as error:
        say("error:", "red", str(error), err=True)
        raise typer.Exit(2) from None
    except EnvironmentFault as error:
        raise fault(error) from None
    except ValueError as error:
        raise fail(str(error)) from None
    return prepared.workers


def run_one(spec: Path, loaded, compiled, console, runner: str, options: Options) -> bool:
    """Run one spec's plan; returns whether every stage finished."""
    from mlflow.exceptions import MlflowException

    from ltspec.faults import EnvironmentFault
    from ltspec.plan.render import plan_json
    from ltspec.runners import launch

    console.print(f"[bold]{compiled.name}[/]: {len(compiled.stages)} stages, {compiled.epochs} epochs in the plan; "
                  f"store {loaded.spec.storage.root}, MLflow {loaded.spec.tracking.uri}")
    console.print(status(compiled, loaded.spec.storage.root).header(), markup=False)
    try:
        summary = launch(runner, loaded, compiled, options, console=console, plan_json=plan_json(compiled, set()))
        if summary is None:  # Slurm jobs submitted, not followed
            return True
    except EnvironmentFault as error:
        raise fault(error) from None
    except (ValueError, MlflowException) as error:
        raise fail(str(error)) from None
    console.print(f"{len(summary.ran)} stages ran, {len(summary.done)} were already done, "
                  f"{len(summary.failed)} failed, {len(summary.blocked)} skipped after a failure")
    for message in summary.failed.values():
        say("failed:", "red", message, err=True)
    if summary.ok and loaded.rehearsal:
        console.print(f"browse the runs: `mlflow ui --backend-store-uri {loaded.spec.tracking.uri}`, experiment "
                      f"{loaded.spec.tracking.experiment}; the report follows")
    elif summary.ok:
        console.print(f"browse the runs: [bold]ltspec ui{shown(spec)}[/] (or `mlflow ui --backend-store-uri "
                      f"{loaded.spec.tracking.uri}`); tables: {report_hint(spec, loaded)}")
    return summary.ok


def report_hint(spec: Path, loaded) -> str:
    """The `ltspec report` command for these runs, overrides included and quoted for a shell, and its folder."""
    import shlex

    from rich.markup import escape

    from ltspec.report.write import report_folder

    command = " ".join([f"ltspec report{shown(spec)}", *map(shlex.quote, loaded.overrides)])
    return f"[bold]{escape(command)}[/] (writes {escape(str(report_folder(loaded)))})"
