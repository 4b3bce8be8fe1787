"""The `ltspec` command: a thin shell over the library.

Commands parse arguments, call the library and render the result. `validate`, `plan` and `schema` never import
torch or mlflow (a spec check should take a blink, not seconds); the commands that train or read runs import
them when called, and `--help` imports neither pydantic nor the spec. One-line messages go through typer's own
styling and only the tree, the progress bars and the tables import rich, which would add 40 ms to `ltspec
validate`.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from rich.tree import Tree

    from ltspec.plan import Plan

# Plain click help (rich_markup_mode=None): flags read `--json`, not `--json <bool>`, and `--help` imports no rich.
app = typer.Typer(add_completion=True, rich_markup_mode=None, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Compile lottery-ticket experiment specs into plans, run them, and report the paper's tables.")

SpecsArg = Annotated[list[Path], typer.Argument(
    help="Experiment specs (TOML), or folders standing for the specs under them (`specs/paper/`), then any "
    "`key=value` overrides of their settings (`train.lr=0.05 seeds=[0]`, values in TOML).",
    show_default=False, metavar="SPEC")]
OptionalSpecsArg = Annotated[Optional[list[Path]], typer.Argument(
    help="Specs or folders of specs, then any `key=value` overrides; none means the offline quickstart.",
    show_default=False, metavar="SPEC")]
OnlyOption = Annotated[list[str], typer.Option(
    "--only", metavar="NAME=VALUE", help="Only the stages with this label, and what they need: generator, arm, "
    "seed, sparsity, round, kind or a swept setting (`lr=0.01`); repeat it to narrow, or to give alternatives.")]
RehearseOption = Annotated[bool, typer.Option(
    "--rehearse", help="The rehearsal of the specs: every stage at toy scale, offline, on stand-in data where the "
    "data is not there, in its own store, MLflow experiment and report folder (`ltspec.rehearsal`).")]


def _version(value: bool) -> None:
    if value:
        from ltspec import __version__

        typer.echo(f"ltspec {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Print the version and exit.")] = False) -> None:
    """Compile lottery-ticket experiment specs into plans, run them, and report the paper's tables.

    Shell completion: `ltspec --install-completion` (then open a new shell).
    """


def _say(tag: str, color: str, message: str, err: bool = False) -> None:
    """One line led by a coloured word (`ok`, `note:`, `error:`)."""
    typer.secho(tag, fg=color, bold=color == "red", err=err, nl=False)
    typer.echo(f" {message}", err=err)


def _fail(message: str) -> typer.Exit:
    """Print a usage error; the caller raises the returned exit (code 2, as for a bad spec)."""
    _say("error:", "red", message, err=True)
    return typer.Exit(2)


def _fault(error: Exception) -> typer.Exit:
    """Print an environment fault (a full disk, a corrupt database, an unreachable server) as one paragraph; the
    caller raises the returned exit (code 1: the spec is fine, the machine is not)."""
    _say("error:", "red", str(error), err=True)
    return typer.Exit(1)


def _frozen_at_exit(command):
    """Freeze the heap when the command ends, so that the interpreter's last collection skips it.

    At exit CPython collects every object the imports made (pydantic's schemas, typer's commands, torch's and
    MLflow's modules): about 40 ms of a 0.3 s `ltspec validate`, and more after a `run` that made many MLflow
    runs, spent on memory the OS takes back anyway. Frozen objects are skipped. Nothing is lost: `run` closes
    what it writes before it returns (files fsynced, checkpoint writes joined, MLflow committed per call), and
    atexit handlers, MLflow's among them, still run.
    """
    @functools.wraps(command)
    def frozen_at_exit(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        finally:
            gc.freeze()
    return frozen_at_exit


def _load(spec: Path, overrides: tuple[str, ...] = (), compile: bool = True, notes: dict | None = None):
    """Load and (unless told not to) compile, or print every problem and exit 2 without running anything. Given
    `notes`, the spec's rehearsal instead, its notes added to them."""
    from ltspec.plan import compile_plan
    from ltspec.spec import SpecError, load_spec

    try:
        loaded = load_spec(spec, overrides)
        if notes is not None:
            from ltspec.rehearsal import rehearse

            rehearsal = rehearse(loaded)
            loaded = rehearsal.loaded
            notes.update(dict.fromkeys(rehearsal.notes))
    except SpecError as error:
        count = len(error.problems)
        _say("error:", "red", f"{error.file}: {count} problem{'s' * (count != 1)}, nothing was run", err=True)
        for problem in error.problems:
            typer.echo("  " + problem.render(error.file), err=True)
        raise typer.Exit(2) from None
    return loaded, compile_plan(loaded) if compile else None


def _split(arguments: list[Path]) -> tuple[list[Path], tuple[str, ...]]:
    """The specs, and the `key=value` overrides after them (an argument with `=` that is no file is one)."""
    specs = [path for path in arguments if "=" not in str(path) or path.exists()]
    return specs, tuple(str(path) for path in arguments if path not in specs)


def _spec_files(paths: list[Path]) -> list[Path]:
    """The specs in the order given, each once; a folder stands for the .toml files under it, sorted."""
    files = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.rglob("*.toml"))
            if not found:
                raise _fail(f"{path}: no .toml spec in this folder")
            files += found
        else:
            files.append(path)
    return list(dict.fromkeys(files))


def _load_all(arguments: list[Path], only: list[str] = (), compile: bool = True,
              rehearse: bool = False) -> list[tuple]:
    """Load and compile every spec (or its rehearsal), with the overrides among `arguments` applied and the plans
    cut to `only`, printing the problems of each bad spec; exit 2 if any was bad."""
    from ltspec.plan.select import SelectionError, parse_choices, select

    paths, overrides = _split(arguments)
    if not paths:
        raise _fail(f"no spec before the overrides {' '.join(overrides)}")
    compiled, failed, notes = [], False, {} if rehearse else None
    for spec in _spec_files(paths):
        try:
            compiled.append((spec, *_load(spec, overrides, compile or bool(only), notes)))
        except typer.Exit:
            failed = True
    if failed:
        raise typer.Exit(2)
    for note in notes or ():
        _say("rehearsal:", "cyan", note)
    try:
        choices = parse_choices(list(only))
        return [(spec, loaded, select(plan, choices) if choices else plan) for spec, loaded, plan in compiled]
    except SelectionError as error:
        raise _fail(f"--only {error}") from None


def _done(plan: Plan, store_root: Path) -> set[str]:
    from ltspec.faults import EnvironmentFault
    from ltspec.store import Store

    store = Store(store_root)
    try:
        return {stage.key for stage in plan.stages if store.is_complete(stage.key)}
    except EnvironmentFault as error:
        raise _fault(error) from None


def _status(plan: Plan, store_root: str):
    """What of the plan the store has done, and how far each half-trained stage got."""
    from ltspec.faults import EnvironmentFault
    from ltspec.plan.status import status
    from ltspec.store import Store

    try:
        return status(plan, Store(Path(store_root)))
    except EnvironmentFault as error:
        raise _fault(error) from None


@app.command()
@_frozen_at_exit
def validate(specs: SpecsArg):
    """Check specs: every problem with file:line:column, or a summary of each compiled plan."""
    failed = False
    paths, overrides = _split(specs)
    for spec in _spec_files(paths):
        try:
            loaded, plan = _load(spec, overrides)
        except typer.Exit:
            failed = True
            continue
        points, seeds = len(loaded.points), len(loaded.spec.seeds)
        _say("ok", "green", f"{spec}: {points} sweep point{'s' * (points != 1)} x {seeds} seed{'s' * (seeds != 1)}, "
             f"{len(plan.trunks)} dense trunks, {len(plan.stages)} stages, {plan.epochs} epochs to train "
             f"({plan.naive_epochs} without sharing)")
        _warn_unequal(plan)
    if failed:
        raise typer.Exit(2)


def _warn_unequal(plan: Plan) -> None:
    unequal = sorted({arm.arm for arm in plan.arms if not arm.equal_budget})
    if unequal:
        _say("note:", "yellow", f"arm{'s' * (len(unequal) > 1)} {', '.join(unequal)} override the epoch budget, so "
             "arms on one mask no longer cost the same (the paper sets T' = T)")


@app.command()
@_frozen_at_exit
def plan(specs: SpecsArg, only: OnlyOption = [],
         as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON for scripts.")] = False,
         estimate: Annotated[bool, typer.Option("--estimate", help="Time a few training steps of each "
                                                "architecture and estimate the wall time left.")] = False,
         device: Annotated[str, typer.Option(help="Device of the estimate: auto, cpu, cuda or cuda:N.")] = "auto"):
    """Show the stage DAG grouped by dense trunk, the epochs to train, and the epochs sharing saves.

    Several specs (or a folder) are shown as one plan, each stage they share once, as a shared store runs them."""
    from ltspec.plan.combine import combine

    loaded = _load_all(specs, only)
    combined = combine([compiled for _, _, compiled in loaded], ", ".join(c.name for _, _, c in loaded))
    compiled = combined.plan
    found = [_status(part, spec.spec.storage.root) for _, spec, part in loaded]
    done = set().union(*(one.done for one in found))
    partial = {key: epoch for one in found for key, epoch in one.partial.items()}
    if as_json:
        typer.echo(json.dumps(plan_json(compiled, done, partial), indent=2))
        return
    from rich.console import Console

    Console().print(plan_tree(compiled, done, partial))
    for path, one, _ in loaded:
        for key, base, values in one.swept():
            replaced = f", replacing {json.dumps(base)} set in the file" if base is not None else ""
            where = f"{Path(path).name}: " if len(loaded) > 1 else ""
            typer.echo(f"{where}the sweep sets {key} to {', '.join(map(json.dumps, values))}{replaced}")
    if estimate:
        typer.echo("estimate: " + _estimate([part for _, _, part in loaded], done, device).describe())
    remaining = sum(stage.epochs - partial.get(stage.key, 0) for stage in compiled.stages if stage.key not in done)
    typer.echo(f"{len(compiled.stages)} stages, {len(done)} already done; {remaining} of {compiled.epochs} epochs "
               f"left to train; sharing saves {combined.naive_epochs - compiled.epochs} of {combined.naive_epochs} "
               "epochs")
    if len(loaded) > 1:
        typer.echo(f"{len(loaded)} specs, {len(compiled.trunks)} dense trunks: run apart they would train "
                   f"{combined.separate_epochs} epochs; sharing across the specs saves "
                   f"{combined.separate_epochs - compiled.epochs}")
    _warn_unequal(compiled)


def plan_json(compiled: Plan, done: set[str], partial: dict[str, int] | None = None) -> dict:
    partial = partial or {}
    return {
        "name": compiled.name, "spec_hash": compiled.spec_hash, "epochs": compiled.epochs,
        "naive_epochs": compiled.naive_epochs,
        "stages": [{"key": s.key, "kind": s.kind, "parents": list(s.parents), "epochs": s.epochs,
                    "done": s.key in done, "epochs_done": partial.get(s.key, s.epochs if s.key in done else 0),
                    "description": s.describe(), "labels": s.labels, "config": s.config,
                    "runtime": s.runtime} for s in compiled.stages],
        "arms": [{**arm.__dict__} for arm in compiled.arms],
    }


def plan_tree(compiled: Plan, done: set[str], partial: dict[str, int] | None = None) -> Tree:
    """Trunk -> generator -> mask -> the stages on that mask; a half-trained stage says how far it got."""
    from rich.tree import Tree

    partial = partial or {}

    def label(stage) -> str:
        mark = "[green]done[/]" if stage.key in done else "[dim]todo[/]"
        if stage.key in partial:
            mark = f"[yellow]{partial[stage.key]}/{stage.epochs} ep done[/]"
        epochs = f" {stage.epochs} ep" if stage.epochs else ""
        return f"{stage.describe()} [dim]{stage.key[:10]}[/]{epochs} {mark}"

    root = Tree(f"[bold]{compiled.name}[/] [dim]spec {compiled.spec_hash}[/]")
    on_mask: dict[str, list] = {}
    for stage in compiled.stages:
        if stage.kind in ("train", "evaluate", "measure") and len(stage.parents) > 1:
            on_mask.setdefault(stage.parents[1], []).append(stage)
    for trunk in compiled.trunks:
        node = root.add(label(trunk))
        generators: dict[str, Tree] = {}
        for stage in compiled.stages:
            if stage.labels.get("trunk") != trunk.key:
                continue
            if stage.kind == "measure" and len(stage.parents) == 1:
                node.add(label(stage))
            if stage.kind == "mask":
                name = stage.labels["generator"]
                branch = generators.get(name) or generators.setdefault(name, node.add(f"[bold]{name}[/]"))
                mask_node = branch.add(label(stage))
                for child in on_mask.get(stage.key, []):
                    mask_node.add(label(child))
    return root


@app.command()
def schema(out: Annotated[Path, typer.Option(help="Where to write the JSON schema.")] =
           Path("schemas/ltspec.schema.json")):
    """Write the spec's JSON schema, for TOML editors (`#:schema ../schemas/ltspec.schema.json`), with the models,
    datasets and mask generators of installed plugins."""
    from ltspec import plugins
    from ltspec.spec.models import rebuild
    from ltspec.spec.schema import schema_text

    try:
        plugins.load()
    except plugins.PluginError as error:
        raise _fail(str(error)) from None
    rebuild()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(schema_text())
    typer.echo(f"wrote {out}")


def quickstart_path() -> Path:
    """The offline quickstart spec shipped inside the package."""
    return Path(__file__).parent / "quickstart.toml"


def _or_quickstart(specs: list[Path] | None) -> list[Path]:
    """The arguments, with the quickstart in front when they name no spec (only overrides, or nothing)."""
    specs = specs or []
    return specs if _split(specs)[0] else [quickstart_path(), *specs]


def _shown(spec: Path) -> str:
    """How to name a spec in a hint: nothing for the quickstart, which every command defaults to."""
    return "" if spec == quickstart_path() else f" {spec}"


@app.command()
@_frozen_at_exit
def run(specs: OptionalSpecsArg = None, only: OnlyOption = [],
        device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
        runner: Annotated[str, typer.Option(help="local (this machine) or ray (a Ray cluster).")] = "local",
        workers: Annotated[Optional[int], typer.Option(
            min=1, help="Stages at once on the local runner [default: on a CPU one per `resources.cpus` cores, "
            "on a GPU 1].")] = None,
        address: Annotated[Optional[str], typer.Option(help="Ray cluster address (ray runner).")] = None,
        gpu_share: Annotated[Optional[float], typer.Option(help="GPUs per stage on Ray; overrides the spec.")] = None,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Start without asking, however long the estimate.")]
        = False, rehearse: RehearseOption = False):
    """Execute the plan: train what is not done yet, resume what was interrupted, log every stage to MLflow.

    Several specs run one after another: a stage that an earlier spec trained in the same store is found done and
    logged to the later spec's experiment as reused, so shared work trains once and each spec keeps its runs.
    `--rehearse` runs the specs' rehearsals, then writes their reports."""
    from rich.console import Console

    if runner not in ("local", "ray"):
        raise _fail(f"unknown runner `{runner}`; use local or ray")
    loaded_specs = _load_all(_or_quickstart(specs), only, rehearse=rehearse)
    console = Console()
    if len(loaded_specs) > 1:
        from ltspec.plan.combine import combine

        combined = combine([compiled for _, _, compiled in loaded_specs], "")
        console.print(f"{len(loaded_specs)} specs: {len(combined.plan.stages)} stages, {combined.plan.epochs} epochs "
                      f"in the combined plan ({combined.separate_epochs} if run apart)")
    workers = _look_before_running(loaded_specs, device, runner, workers, yes)
    from ltspec.preemption import cause, exit_code, preemptible

    ok = True
    try:
        with preemptible():
            for spec, loaded, compiled in loaded_specs:
                ok &= _run_one(spec, loaded, compiled, console, device=device, runner=runner, workers=workers,
                               address=address, gpu_share=gpu_share)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM / SIGHUP (a scheduler's preemption)
        _say("interrupted:", "yellow", f"by {cause(interrupt).name}; finished epochs are kept in the store's "
             "checkpoints and the current MLflow run is marked KILLED; run the same command again to resume",
             err=True)
        raise typer.Exit(exit_code(interrupt)) from None
    if rehearse:
        ok &= not max(_write_reports(loaded_specs, bool(only), ["md", "tex", "csv"], None, console))
    if not ok:
        raise typer.Exit(1)


def _estimate(plans: list[Plan], done: set[str], device: str):
    from ltspec.preflight import estimate
    from ltspec.runners.common import resolve_device

    try:
        return estimate(plans, done, resolve_device(device))
    except ValueError as error:
        raise _fail(str(error)) from None


def _look_before_running(loaded_specs: list[tuple], device: str, runner: str, workers: int | None,
                         yes: bool) -> int:
    """Check that every dataset that will not be downloaded is there, estimate the work (and ask before more than a
    day on a CPU), then fetch what `download = true` asks for.

    A missing dataset stops the run before the estimate times a single training step, and before a question whose
    answer could not start the run anyway; a download starts only once the user agreed to the run. Returns the
    stages the local runner trains at once (`--workers`, else `default_workers` for the work estimated), having
    started the workers' server if more than one: its imports overlap the rest of the start-up."""
    from ltspec.preflight import DAY, check_datasets

    plans = [compiled for _, _, compiled in loaded_specs]
    done = set().union(*(_done(compiled, Path(loaded.spec.storage.root)) for _, loaded, compiled in loaded_specs))
    _stop_if_missing(check_datasets(plans, done, fetched=False))
    if runner == "local":
        from ltspec.runners.common import resolve_device
        from ltspec.runners.local import EARLY_START_EPOCHS, default_workers
        from ltspec.runners.workers import start_server

        try:
            where = resolve_device(device)
        except ValueError as error:
            raise _fail(str(error)) from None
        if workers != 1 and where.type == "cpu" and \
                sum(s.epochs for plan in plans for s in plan.stages if s.key not in done) >= EARLY_START_EPOCHS:
            start_server()  # before the estimate (seconds of imports and timed steps), likely to need it
        found = _estimate(plans, done, device)
        workers = workers or min(default_workers(loaded.spec, where, found.seconds) for _, loaded, _ in loaded_specs)
        if workers > 1:
            start_server()
        found = dataclasses.replace(found, at_once=workers)
        _say("estimate:", "cyan", found.describe())
        if found.device == "cpu" and (found.wall_seconds or 0) > DAY and not yes:
            typer.echo("This plan is GPU work: on a GPU it takes a small fraction of that. Run it on a machine with "
                       "a GPU (--device cuda), or on a Ray cluster (--runner ray).")
            if not typer.confirm("Start it on the CPU anyway?", default=False):
                raise typer.Exit(1)
    _stop_if_missing(check_datasets(plans, done, fetched=True))
    return workers or 1


def _stop_if_missing(problems: list[str]) -> None:
    if problems:
        _say("error:", "red", "a dataset this run needs is not there, so nothing was run: " + " ".join(problems),
             err=True)
        raise typer.Exit(2)


def _run_one(spec: Path, loaded, compiled: Plan, console, *, device, runner, workers, address, gpu_share) -> bool:
    """Run one spec's plan; returns whether every stage finished."""
    console.print(f"[bold]{compiled.name}[/]: {len(compiled.stages)} stages, {compiled.epochs} epochs in the plan; "
                  f"store {loaded.spec.storage.root}, MLflow {loaded.spec.tracking.uri}")
    console.print(_status(compiled, loaded.spec.storage.root).header(), markup=False)
    from mlflow.exceptions import MlflowException

    from ltspec.faults import EnvironmentFault

    try:
        if runner == "ray":
            from ltspec.runners.ray import run_ray

            summary = run_ray(loaded, compiled, address=address, gpu_share=gpu_share, console=console,
                              plan_json=plan_json(compiled, set()))
        else:
            from ltspec.runners.local import run_local

            summary = run_local(loaded, compiled, device=device, console=console, plan_json=plan_json(compiled, set()),
                                workers=workers)
    except EnvironmentFault as error:
        raise _fault(error) from None
    except (ValueError, MlflowException) as error:
        raise _fail(str(error)) from None
    console.print(f"{len(summary.ran)} stages ran, {len(summary.done)} were already done, "
                  f"{len(summary.failed)} failed, {len(summary.blocked)} skipped after a failure")
    for message in summary.failed.values():
        _say("failed:", "red", message, err=True)
    if summary.ok and loaded.rehearsal:
        console.print(f"browse the runs: `mlflow ui --backend-store-uri {loaded.spec.tracking.uri}`, experiment "
                      f"{loaded.spec.tracking.experiment}; the report follows")
    elif summary.ok:
        console.print(f"browse the runs: [bold]ltspec ui{_shown(spec)}[/] (or `mlflow ui --backend-store-uri "
                      f"{loaded.spec.tracking.uri}`); tables: [bold]ltspec report{_shown(spec)}[/]")
    return summary.ok


@app.command()
def report(specs: OptionalSpecsArg = None, only: OnlyOption = [],
           format: Annotated[list[str], typer.Option("--format", "-f", help="File formats: md, tex, csv.")] = [
               "md", "tex", "csv"],
           out: Annotated[Optional[Path], typer.Option(help="Output folder (default: reports/<spec name>; with "
                                                            "several specs, OUT/<spec name>).")] = None,
           rehearse: RehearseOption = False):
    """The paper's tables and figures and a check of its claims, from the specs' MLflow runs (mean ± std over seeds);
    `--rehearse`: of their rehearsals (`ltspec run --rehearse`), into reports/<spec name>-rehearsal."""
    from rich.console import Console

    unknown = sorted(set(format) - {"md", "tex", "csv"})
    if unknown:
        raise _fail(f"unknown format {', '.join(unknown)}; use md, tex or csv")
    # the report compiles each sweep point itself
    loaded = _load_all(_or_quickstart(specs), only, compile=False, rehearse=rehearse)
    raise typer.Exit(max(_write_reports(loaded, bool(only), format, out, Console())))


def _write_reports(loaded: list[tuple], only: bool, formats: list[str], out: Path | None, console) -> list[int]:
    """Each spec's report (of the stages `--only` kept, if `only`); the exit code of each."""
    from ltspec.faults import EnvironmentFault
    from ltspec.report import write_report

    codes = []
    for _, spec_loaded, part in loaded:
        folder = out / spec_loaded.spec.name if out is not None and len(loaded) > 1 else out
        kept = {stage.key for stage in part.stages} if only else None
        try:
            codes.append(write_report(spec_loaded, formats=formats, out_dir=folder, console=console, only=kept))
        except EnvironmentFault as error:
            raise _fault(error) from None
    return codes


@app.command()
def verify(spec: Annotated[Optional[Path], typer.Argument(help="The spec whose store to check; none checks the "
                                                          "quickstart's.", show_default=False)] = None,
           every: Annotated[bool, typer.Option("--all", help="Every stage in the store, not only this spec's.")]
           = False,
           set_aside: Annotated[bool, typer.Option(help="Move damaged files aside (never deleting them) so that "
                                                   "`ltspec run` recomputes their stages.")] = False):
    """Check the store without running anything: every record sound, every artifact it vouches for intact."""
    from ltspec.faults import EnvironmentFault
    from ltspec.store import Store

    loaded, compiled = _load(spec or quickstart_path())
    store = Store(Path(loaded.spec.storage.root))
    keys = list(store.stage_keys()) if every else [stage.key for stage in compiled.stages]
    try:
        damage = {key: store.verify_stage(key, full=True) for key in keys}
        done = sum(not found and store.record(key) is not None for key, found in damage.items())
        broken = {key: found for key, found in damage.items() if found}
        for found in broken.values():
            for item in found:
                _say("broken:", "red", str(item))
            if set_aside:
                store.set_aside(found)
    except EnvironmentFault as error:
        raise _fault(error) from None
    summary = (f"{store.root}: {len(keys)} stages checked, {done} complete and intact, {len(broken)} broken, "
               f"{len(keys) - done - len(broken)} not done")
    if not broken:
        _say("ok", "green", summary)
        return
    action = ("their damaged files were moved aside, and `ltspec run` recomputes them" if set_aside else
              "`ltspec verify --set-aside` moves their damaged files aside (never deleting them), then `ltspec run` "
              "recomputes them")
    _say("error:", "red", f"{summary}; {action}", err=True)
    raise typer.Exit(1)


@app.command()
def ui(spec: Annotated[Optional[Path], typer.Argument(help="The spec whose tracking store to open; none means the "
                                                      "quickstart.", show_default=False)] = None,
       port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000):
    """Start the MLflow UI on 127.0.0.1 over the spec's tracking store, print links to its runs table and to a
    lottery-vs-reinit comparison, and list every run on one page; Ctrl-C (or SIGTERM) stops all of it."""
    import os
    import signal
    import subprocess

    from ltspec import ui as mlflow_ui

    def stop(*_) -> None:
        raise KeyboardInterrupt

    loaded, compiled = _load(spec or quickstart_path())
    uri, base = loaded.spec.tracking.uri, f"http://127.0.0.1:{port}"
    typer.echo(f"MLflow UI on {base} over {uri} (Ctrl-C stops it)")
    shown = mlflow_ui.links(uri, loaded.spec.tracking.experiment or loaded.spec.name, compiled, base)
    for title, url in shown:
        typer.echo(f"  {title}: {url}")
    if not shown:
        typer.echo(f"  no runs of {loaded.spec.name} yet: `ltspec run{_shown(spec or quickstart_path())}` makes them")
    server = subprocess.Popen(mlflow_ui.command(uri, port), start_new_session=True)
    signal.signal(signal.SIGTERM, stop)
    try:
        server.wait()
    except KeyboardInterrupt:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()


@app.command()
@_frozen_at_exit
def specs():
    """List the specs that come with ltspec, with what each is for; `ltspec init NAME --from SPEC` copies one."""
    from ltspec.shipped import description, shipped

    known = shipped()
    width = max(map(len, known))
    for name, path in known.items():
        typer.echo(f"{name:<{width}}  {description(path)}")


@app.command()
def init(name: Annotated[str, typer.Argument(help="The new spec's name; writes NAME.toml here.", show_default=False)],
         source: Annotated[str, typer.Option("--from", help="A shipped spec's name (`ltspec specs`) or a spec file.")]
         = "quickstart"):
    """Copy a spec to edit: NAME.toml in this folder, renamed NAME so that its runs get their own experiment."""
    from ltspec.shipped import copy

    try:
        target = copy(source, name.removesuffix(".toml"))
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        raise _fail(str(error)) from None
    _say("wrote", "green", f"{target} from {source}: edit it, then `ltspec validate {target}` and `ltspec run {target}`")


def _ticket(spec: Path, generator, sparsity, arm, seed, sweep: list[str]):
    """The ticket the options name, or exit 2 saying why there is none."""
    from ltspec.plan.select import SelectionError, parse_choices
    from ltspec.tickets import TicketError, load

    loaded, _ = _load(spec)
    try:
        choices = {name: values[0] for name, values in parse_choices(sweep).items()}
        return load(loaded, generator=generator, sparsity=sparsity, arm=arm, seed=seed, **choices)
    except (TicketError, SelectionError) as error:
        raise _fail(str(error)) from None


@app.command()
def export(spec: Annotated[Path, typer.Argument(help="The spec that trained the ticket.", show_default=False)],
           out: Annotated[Path, typer.Option(help="Folder to write into.", show_default=False)],
           generator: Annotated[Optional[str], typer.Option(help="Mask generator, e.g. imp.")] = None,
           sparsity: Annotated[Optional[float], typer.Option(help="Sparsity, e.g. 0.875.")] = None,
           arm: Annotated[Optional[str], typer.Option(help="Arm, e.g. lottery.")] = None,
           seed: Annotated[Optional[int], typer.Option(help="Seed.")] = None,
           sweep: Annotated[list[str], typer.Option("--sweep", metavar="KEY=VALUE",
                                                    help="A sweep value, e.g. lr=0.01; repeat for several.")] = []):
    """Write a trained ticket as plain files: state_dict.pt and mask.pt (for torch.load(weights_only=True)) and
    ticket.json (what it is, its metrics, and the ltspec.nets.build_model arguments its state dict fits).

    A label the spec has one value of may be left out."""
    from ltspec.tickets import export as write

    ticket = _ticket(spec, generator, sparsity, arm, seed, sweep)
    for path in write(ticket, out):
        typer.echo(f"wrote {path}")
    metrics = ticket.record["metrics"]
    typer.echo(f"{ticket.stage.describe()}: test accuracy {metrics.get('final_test_accuracy', float('nan')):.4f}, "
               f"sparsity {ticket.mask.sparsity():.4f}")


@app.command(name="gc")
def collect(specs: SpecsArg,
            delete: Annotated[bool, typer.Option("--delete", help="Remove them (default: only list them).")] = False):
    """List the store entries that none of the given specs needs (every spec sharing the store must be given);
    --delete removes them. Run it when no run is writing to the store."""
    from ltspec.plan.status import remove, unreferenced
    from ltspec.store import Store

    loaded = _load_all(specs)
    roots: dict[Path, list] = {}
    for _, spec, compiled in loaded:
        roots.setdefault(Path(spec.spec.storage.root).resolve(), []).append(compiled)
    for root, plans in roots.items():
        unused = unreferenced(Store(root), plans)
        for folder in unused:
            typer.echo(str(folder))
        if delete:
            freed = remove(unused)
            typer.echo(f"{root}: removed {len(unused)} entries ({freed / 2**20:.1f} MiB)")
        else:
            typer.echo(f"{root}: {len(unused)} entries no given spec needs; `--delete` removes them")
