"""The `ltspec` command: a thin shell over the library.

Commands parse arguments, call the library and render with rich. `validate`, `plan` and `schema` never import
torch or mlflow (a spec check should take a blink, not seconds); the commands that train or read runs import
them when called.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from ltspec.plan import Plan, compile_plan
from ltspec.spec import SpecError, load_spec

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Compile lottery-ticket experiment specs into plans, run them, and report the paper's tables.")
console = Console()
errors = Console(stderr=True, soft_wrap=True)

SpecArg = Annotated[Path, typer.Argument(help="The experiment spec (TOML).", show_default=False)]


def _load(spec: Path):
    """Load and compile, or print every problem and exit 2 without running anything."""
    try:
        loaded = load_spec(spec)
    except SpecError as error:
        count = len(error.problems)
        errors.print(f"[bold red]error:[/] {error.file}: {count} problem{'s' * (count != 1)}, nothing was run")
        for problem in error.problems:
            errors.print("  " + problem.render(error.file), markup=False, highlight=False)
        raise typer.Exit(2) from None
    return loaded, compile_plan(loaded)


def _done(plan: Plan, store_root: Path) -> set[str]:
    from ltspec.store import Store

    store = Store(store_root)
    return {stage.key for stage in plan.stages if store.is_complete(stage.key)}


@app.command()
def validate(spec: SpecArg):
    """Check a spec: every problem with file:line:column, or a summary of the compiled plan."""
    loaded, plan = _load(spec)
    points, seeds = len(loaded.points), len(loaded.spec.seeds)
    console.print(f"[green]ok[/] {spec}: {points} sweep point{'s' * (points != 1)} x {seeds} seed"
                  f"{'s' * (seeds != 1)}, {len(plan.trunks)} dense trunks, {len(plan.stages)} stages, "
                  f"{plan.epochs} epochs to train ({plan.naive_epochs} without sharing)")
    _warn_unequal(plan)


def _warn_unequal(plan: Plan) -> None:
    unequal = sorted({arm.arm for arm in plan.arms if not arm.equal_budget})
    if unequal:
        console.print(f"[yellow]note:[/] arm{'s' * (len(unequal) > 1)} {', '.join(unequal)} override the epoch "
                      "budget, so arms on one mask no longer cost the same (the paper sets T' = T)")


@app.command()
def plan(spec: SpecArg,
         as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON for scripts.")] = False):
    """Show the stage DAG grouped by dense trunk, the epochs to train, and the epochs sharing saves."""
    loaded, compiled = _load(spec)
    done = _done(compiled, Path(loaded.spec.storage.root))
    if as_json:
        typer.echo(json.dumps(plan_json(compiled, done), indent=2))
        return
    console.print(plan_tree(compiled, done))
    remaining = sum(stage.epochs for stage in compiled.stages if stage.key not in done)
    console.print(f"{len(compiled.stages)} stages, {len(done)} already done; {remaining} of {compiled.epochs} epochs "
                  f"left to train; sharing saves {compiled.naive_epochs - compiled.epochs} of "
                  f"{compiled.naive_epochs} epochs")
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
    """Write the spec's JSON schema, for TOML editors (`#:schema ../schemas/ltspec.schema.json`)."""
    from ltspec.spec.schema import schema_text

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(schema_text())
    console.print(f"wrote {out}")


def quickstart_path() -> Path:
    """The offline quickstart spec shipped inside the package."""
    return Path(__file__).parent / "quickstart.toml"


@app.command()
def run(spec: Annotated[Optional[Path], typer.Argument(help="The spec; none runs the offline quickstart.",
                                                       show_default=False)] = None,
        device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
        runner: Annotated[str, typer.Option(help="local (this process) or ray (a Ray cluster).")] = "local",
        address: Annotated[Optional[str], typer.Option(help="Ray cluster address (ray runner).")] = None,
        gpu_share: Annotated[Optional[float], typer.Option(help="GPUs per stage on Ray; overrides the spec.")] = None):
    """Execute the plan: train what is not done yet, resume what was interrupted, log every stage to MLflow."""
    spec = spec or quickstart_path()
    loaded, compiled = _load(spec)
    console.print(f"[bold]{compiled.name}[/]: {len(compiled.stages)} stages, {compiled.epochs} epochs in the plan; "
                  f"store {loaded.spec.storage.root}, MLflow {loaded.spec.tracking.uri}")
    if runner not in ("local", "ray"):
        errors.print(f"[bold red]error:[/] unknown runner `{runner}`; use local or ray")
        raise typer.Exit(2)
    from mlflow.exceptions import MlflowException

    try:
        if runner == "ray":
            from runners.ray import run_ray

            summary = run_ray(loaded, compiled, address=address, gpu_share=gpu_share, console=console,
                              plan_json=plan_json(compiled, set()))
        else:
            from runners.local import run_local

            summary = run_local(loaded, compiled, device=device, console=console,
                                plan_json=plan_json(compiled, set()))
    except KeyboardInterrupt:
        errors.print("[yellow]interrupted:[/] finished epochs are kept in the store's checkpoints and the "
                     "current MLflow run is marked KILLED; run the same command again to resume")
        raise typer.Exit(130) from None
    except (ValueError, MlflowException) as error:
        errors.print(f"[bold red]error:[/] {escape(str(error))}")
        raise typer.Exit(2) from None
    console.print(f"{len(summary.ran)} stages ran, {len(summary.done)} were already done, "
                  f"{len(summary.failed)} failed, {len(summary.blocked)} skipped after a failure")
    for message in summary.failed.values():
        errors.print(f"[red]failed:[/] {message}")
    if not summary.ok:
        raise typer.Exit(1)
    console.print(f"browse the runs: [bold]ltspec ui {spec}[/] (or `mlflow ui --backend-store-uri "
                  f"{loaded.spec.tracking.uri}`); tables: [bold]ltspec report {spec}[/]")


@app.command()
def report(spec: SpecArg,
           format: Annotated[list[str], typer.Option("--format", "-f", help="File formats: md, tex, csv.")] = [
               "md", "tex", "csv"],
           out: Annotated[Optional[Path], typer.Option(help="Output folder (default: reports/<spec name>).")] = None):
    """The paper's tables and figures from the spec's MLflow runs (mean ± std over seeds)."""
    from ltspec.report import write_report

    unknown = sorted(set(format) - {"md", "tex", "csv"})
    if unknown:
        errors.print(f"[bold red]error:[/] unknown format {', '.join(unknown)}; use md, tex or csv")
        raise typer.Exit(2)
    _load(spec)
    raise typer.Exit(write_report(spec, formats=format, out_dir=out, console=console))


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
    console.print(f"MLflow UI on http://127.0.0.1:{port} over {uri} (Ctrl-C stops it)")
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host",
                               "127.0.0.1", "--port", str(port)], start_new_session=True)
    signal.signal(signal.SIGTERM, stop)
    try:
        server.wait()
    except KeyboardInterrupt:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()

