"""The `ltspec` command: a thin shell over the library.

Commands parse arguments, call the library and render the result. `validate`, `plan` and `schema` never import
torch or mlflow (a spec check should take a blink, not seconds); the commands that train or read runs import
them when called, and `--help` imports neither pydantic nor the spec. One-line messages go through typer's own
styling and only the tree, the progress bars and the tables import rich, which would add 40 ms to `ltspec
validate`.
"""

from __future__ import annotations

import functools
import gc
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from rich.tree import Tree

    from ltspec.plan import Plan

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Compile lottery-ticket experiment specs into plans, run them, and report the paper's tables.")

SpecsArg = Annotated[list[Path], typer.Argument(
    help="Experiment specs (TOML), or folders standing for the specs under them (`specs/paper/`).",
    show_default=False)]


def _say(tag: str, color: str, message: str, err: bool = False) -> None:
    """One line led by a coloured word (`ok`, `note:`, `error:`)."""
    typer.secho(tag, fg=color, bold=color == "red", err=err, nl=False)
    typer.echo(f" {message}", err=err)


def _fail(message: str) -> typer.Exit:
    """Print a usage error; the caller raises the returned exit (code 2, as for a bad spec)."""
    _say("error:", "red", message, err=True)
    return typer.Exit(2)


def _read_only(command):
    """For commands that write nothing but their output: freeze the heap when they end.

    At exit CPython collects every object the imports made (pydantic's schemas, typer's commands): about 40 ms
    of a 0.3 s `ltspec validate`, spent on memory the OS takes back anyway. Frozen objects are skipped. Commands
    that write files or runs keep that last collection, whose finalizers may still flush something.
    """
    @functools.wraps(command)
    def frozen_at_exit(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        finally:
            gc.freeze()
    return frozen_at_exit


def _load(spec: Path):
    """Load and compile, or print every problem and exit 2 without running anything."""
    from ltspec.plan import compile_plan
    from ltspec.spec import SpecError, load_spec

    try:
        loaded = load_spec(spec)
    except SpecError as error:
        count = len(error.problems)
        _say("error:", "red", f"{error.file}: {count} problem{'s' * (count != 1)}, nothing was run", err=True)
        for problem in error.problems:
            typer.echo("  " + problem.render(error.file), err=True)
        raise typer.Exit(2) from None
    return loaded, compile_plan(loaded)


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


def _load_all(paths: list[Path]) -> list[tuple]:
    """Load and compile every spec, printing the problems of each bad one; exit 2 if any was bad."""
    compiled, failed = [], False
    for spec in _spec_files(paths):
        try:
            compiled.append((spec, *_load(spec)))
        except typer.Exit:
            failed = True
    if failed:
        raise typer.Exit(2)
    return compiled


def _done(plan: Plan, store_root: Path) -> set[str]:
    from ltspec.store import Store

    store = Store(store_root)
    return {stage.key for stage in plan.stages if store.is_complete(stage.key)}


@app.command()
@_read_only
def validate(specs: SpecsArg):
    """Check specs: every problem with file:line:column, or a summary of each compiled plan."""
    failed = False
    for spec in _spec_files(specs):
        try:
            loaded, plan = _load(spec)
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
@_read_only
def plan(specs: SpecsArg,
         as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON for scripts.")] = False):
    """Show the stage DAG grouped by dense trunk, the epochs to train, and the epochs sharing saves.

    Several specs (or a folder) are shown as one plan, each stage they share once, as a shared store runs them."""
    from ltspec.plan.combine import combine

    loaded = _load_all(specs)
    combined = combine([compiled for _, _, compiled in loaded], ", ".join(c.name for _, _, c in loaded))
    compiled = combined.plan
    done = set().union(*(_done(part, Path(spec.spec.storage.root)) for _, spec, part in loaded))
    if as_json:
        typer.echo(json.dumps(plan_json(compiled, done), indent=2))
        return
    from rich.console import Console

    Console().print(plan_tree(compiled, done))
    for path, one, _ in loaded:
        for key, base, values in one.swept():
            replaced = f", replacing {json.dumps(base)} set in the file" if base is not None else ""
            where = f"{Path(path).name}: " if len(loaded) > 1 else ""
            typer.echo(f"{where}the sweep sets {key} to {', '.join(map(json.dumps, values))}{replaced}")
    remaining = sum(stage.epochs for stage in compiled.stages if stage.key not in done)
    typer.echo(f"{len(compiled.stages)} stages, {len(done)} already done; {remaining} of {compiled.epochs} epochs "
               f"left to train; sharing saves {combined.naive_epochs - compiled.epochs} of {combined.naive_epochs} "
               "epochs")
    if len(loaded) > 1:
        typer.echo(f"{len(loaded)} specs, {len(compiled.trunks)} dense trunks: run apart they would train "
                   f"{combined.separate_epochs} epochs; sharing across the specs saves "
                   f"{combined.separate_epochs - compiled.epochs}")
    _warn_unequal(compiled)


def plan_json(compiled: Plan, done: set[str]) -> dict:
    return {
        "name": compiled.name, "spec_hash": compiled.spec_hash, "epochs": compiled.epochs,
        "naive_epochs": compiled.naive_epochs,
        "stages": [{"key": s.key, "kind": s.kind, "parents": list(s.parents), "epochs": s.epochs,
                    "done": s.key in done, "description": s.describe(), "labels": s.labels, "config": s.config,
                    "runtime": s.runtime} for s in compiled.stages],
        "arms": [{**arm.__dict__} for arm in compiled.arms],
    }


def plan_tree(compiled: Plan, done: set[str]) -> Tree:
    """Trunk -> generator -> mask -> the stages on that mask."""
    from rich.tree import Tree

    def label(stage) -> str:
        mark = "[green]done[/]" if stage.key in done else "[dim]todo[/]"
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
    from ltspec.spec.schema import schema_text

    try:
        plugins.load()
    except plugins.PluginError as error:
        raise _fail(str(error)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(schema_text())
    typer.echo(f"wrote {out}")


def quickstart_path() -> Path:
    """The offline quickstart spec shipped inside the package."""
    return Path(__file__).parent / "quickstart.toml"


@app.command()
def run(specs: Annotated[Optional[list[Path]], typer.Argument(
            help="Specs or folders of specs; none runs the offline quickstart.", show_default=False)] = None,
        device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
        runner: Annotated[str, typer.Option(help="local (this process) or ray (a Ray cluster).")] = "local",
        address: Annotated[Optional[str], typer.Option(help="Ray cluster address (ray runner).")] = None,
        gpu_share: Annotated[Optional[float], typer.Option(help="GPUs per stage on Ray; overrides the spec.")] = None):
    """Execute the plan: train what is not done yet, resume what was interrupted, log every stage to MLflow.

    Several specs run one after another: a stage that an earlier spec trained in the same store is found done and
    logged to the later spec's experiment as reused, so shared work trains once and each spec keeps its runs."""
    from rich.console import Console

    if runner not in ("local", "ray"):
        raise _fail(f"unknown runner `{runner}`; use local or ray")
    loaded_specs = _load_all(specs or [quickstart_path()])
    console = Console()
    if len(loaded_specs) > 1:
        from ltspec.plan.combine import combine

        combined = combine([compiled for _, _, compiled in loaded_specs], "")
        console.print(f"{len(loaded_specs)} specs: {len(combined.plan.stages)} stages, {combined.plan.epochs} epochs "
                      f"in the combined plan ({combined.separate_epochs} if run apart)")
    from ltspec.preemption import cause, exit_code, preemptible

    ok = True
    try:
        with preemptible():
            for spec, loaded, compiled in loaded_specs:
                ok &= _run_one(spec, loaded, compiled, console, device=device, runner=runner, address=address,
                               gpu_share=gpu_share)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM / SIGHUP (a scheduler's preemption)
        _say("interrupted:", "yellow", f"by {cause(interrupt).name}; finished epochs are kept in the store's "
             "checkpoints and the current MLflow run is marked KILLED; run the same command again to resume",
             err=True)
        raise typer.Exit(exit_code(interrupt)) from None
    if not ok:
        raise typer.Exit(1)


def _run_one(spec: Path, loaded, compiled: Plan, console, *, device, runner, address, gpu_share) -> bool:
    """Run one spec's plan; returns whether every stage finished."""
    console.print(f"[bold]{compiled.name}[/]: {len(compiled.stages)} stages, {compiled.epochs} epochs in the plan; "
                  f"store {loaded.spec.storage.root}, MLflow {loaded.spec.tracking.uri}")
    from mlflow.exceptions import MlflowException

    try:
        if runner == "ray":
            from ltspec.runners.ray import run_ray

            summary = run_ray(loaded, compiled, address=address, gpu_share=gpu_share, console=console,
                              plan_json=plan_json(compiled, set()))
        else:
            from ltspec.runners.local import run_local

            summary = run_local(loaded, compiled, device=device, console=console,
                                plan_json=plan_json(compiled, set()))
    except (ValueError, MlflowException) as error:
        raise _fail(str(error)) from None
    console.print(f"{len(summary.ran)} stages ran, {len(summary.done)} were already done, "
                  f"{len(summary.failed)} failed, {len(summary.blocked)} skipped after a failure")
    for message in summary.failed.values():
        _say("failed:", "red", message, err=True)
    if summary.ok:
        console.print(f"browse the runs: [bold]ltspec ui {spec}[/] (or `mlflow ui --backend-store-uri "
                      f"{loaded.spec.tracking.uri}`); tables: [bold]ltspec report {spec}[/]")
    return summary.ok


@app.command()
def report(specs: SpecsArg,
           format: Annotated[list[str], typer.Option("--format", "-f", help="File formats: md, tex, csv.")] = [
               "md", "tex", "csv"],
           out: Annotated[Optional[Path], typer.Option(help="Output folder (default: reports/<spec name>; with "
                                                            "several specs, OUT/<spec name>).")] = None):
    """The paper's tables and figures and a check of its claims, from the specs' MLflow runs (mean ± std over seeds)."""
    from rich.console import Console

    from ltspec.report import write_report

    unknown = sorted(set(format) - {"md", "tex", "csv"})
    if unknown:
        raise _fail(f"unknown format {', '.join(unknown)}; use md, tex or csv")
    loaded = _load_all(specs)
    console, codes = Console(), []
    for spec, spec_loaded, _ in loaded:
        folder = out / spec_loaded.spec.name if out is not None and len(loaded) > 1 else out
        codes.append(write_report(spec, formats=format, out_dir=folder, console=console))
    raise typer.Exit(max(codes))


@app.command()
def ui(spec: Annotated[Optional[Path], typer.Argument(help="The spec whose tracking store to open.",
                                                      show_default=False)] = None,
       port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000):
    """Start the MLflow UI on 127.0.0.1 over the spec's tracking store; Ctrl-C (or SIGTERM) stops all of it."""
    import os
    import signal
    import subprocess
    import sys

    def stop(*_) -> None:
        raise KeyboardInterrupt

    uri = _load(spec)[0].spec.tracking.uri if spec else "sqlite:///mlflow.db"
    typer.echo(f"MLflow UI on http://127.0.0.1:{port} over {uri} (Ctrl-C stops it)")
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host",
                               "127.0.0.1", "--port", str(port)], start_new_session=True)
    signal.signal(signal.SIGTERM, stop)
    try:
        server.wait()
    except KeyboardInterrupt:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()

