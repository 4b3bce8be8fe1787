"""What every command of the shell shares: its arguments, how it prints, how it loads specs and fails.

One-line messages go through typer's own styling, and only the tree, the progress bars and the tables import rich
(`ltspec validate` never needs it). A spec problem exits 2 and runs nothing; a fault of the machine (a full disk, a
corrupt database, an unreachable server) exits 1: the spec is fine, the machine is not.
"""

from __future__ import annotations

import functools
import gc
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from ltspec.plan import Plan
    from ltspec.plan.status import Status

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


def say(tag: str, color: str, message: str, err: bool = False) -> None:
    """One line led by a coloured word (`ok`, `note:`, `error:`)."""
    typer.secho(tag, fg=color, bold=color == "red", err=err, nl=False)
    typer.echo(f" {message}", err=err)


def fail(message: str) -> typer.Exit:
    """Print a usage error; the caller raises the returned exit (code 2, as for a bad spec)."""
    say("error:", "red", message, err=True)
    return typer.Exit(2)


def fault(error: Exception) -> typer.Exit:
    """Print an environment fault as one paragraph; the caller raises the returned exit (code 1)."""
    say("error:", "red", str(error), err=True)
    return typer.Exit(1)


def frozen_at_exit(command):
    """Freeze the heap when the command ends, so that the interpreter's last collection skips it.

    At exit CPython collects every object the imports made (pydantic's schemas, typer's commands, torch's and
    MLflow's modules), memory the OS takes back anyway. Frozen objects are skipped. Nothing is lost: `run` closes
    what it writes before it returns (files fsynced, checkpoint writes joined, MLflow committed per call), and
    atexit handlers, MLflow's among them, still run.
    """
    @functools.wraps(command)
    def frozen(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        finally:
            gc.freeze()
    return frozen


def load(spec: Path, overrides: tuple[str, ...] = (), compile: bool = True, notes: dict | None = None):
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
        say("error:", "red", f"{error.file}: {count} problem{'s' * (count != 1)}, nothing was run", err=True)
        for problem in error.problems:
            typer.echo("  " + problem.render(error.file), err=True)
        raise typer.Exit(2) from None
    return loaded, compile_plan(loaded) if compile else None


def split(arguments: list[Path]) -> tuple[list[Path], tuple[str, ...]]:
    """The specs, and the `key=value` overrides after them (an argument with `=` that is no file is one)."""
    specs = [path for path in arguments if "=" not in str(path) or _names_a_file(path)]
    return specs, tuple(str(path) for path in arguments if path not in specs)


def _names_a_file(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name the OS refuses (a long override) names no file
        return False


def spec_files(paths: list[Path]) -> list[Path]:
    """The specs in the order given, each once; a folder stands for the .toml files under it, sorted."""
    files = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.rglob("*.toml"))
            if not found:
                raise fail(f"{path}: no .toml spec in this folder")
            files += found
        else:
            files.append(path)
    return list(dict.fromkeys(files))


def load_all(arguments: list[Path], only: list[str] = (), compile: bool = True,
             rehearse: bool = False) -> list[tuple]:
    """Load and compile every spec (or its rehearsal), with the overrides among `arguments` applied and the plans
    cut to `only`, printing the problems of each bad spec; exit 2 if any was bad."""
    from ltspec.plan.select import SelectionError, parse_choices, select

    paths, overrides = split(arguments)
    if not paths:
        raise fail(f"no spec before the overrides {' '.join(overrides)}")
    compiled, failed, notes = [], False, {} if rehearse else None
    for spec in spec_files(paths):
        try:
            compiled.append((spec, *load(spec, overrides, compile or bool(only), notes)))
        except typer.Exit:
            failed = True
    if failed:
        raise typer.Exit(2)
    for note in notes or ():
        say("rehearsal:", "cyan", note)
    try:
        choices = parse_choices(list(only))
        return [(spec, loaded, select(plan, choices) if choices else plan) for spec, loaded, plan in compiled]
    except SelectionError as error:
        raise fail(f"--only {error}") from None


def status(plan: Plan, store_root: str) -> Status:
    """What of the plan the store has done, and how far each half-trained stage got."""
    from ltspec.faults import EnvironmentFault
    from ltspec.plan.status import status as measured
    from ltspec.store import Store

    try:
        return measured(plan, Store(Path(store_root)))
    except EnvironmentFault as error:
        raise fault(error) from None


def warn_unequal(plan: Plan) -> None:
    unequal = sorted({arm.arm for arm in plan.arms if not arm.equal_budget})
    if unequal:
        say("note:", "yellow", f"arm{'s' * (len(unequal) > 1)} {', '.join(unequal)} override the epoch budget, so "
            "arms on one mask no longer cost the same (the paper sets T' = T)")


def quickstart_path() -> Path:
    """The offline quickstart spec shipped inside the package."""
    return Path(__file__).parent.parent / "quickstart.toml"


def or_quickstart(specs: list[Path] | None) -> list[Path]:
    """The arguments, with the quickstart in front when they name no spec (only overrides, or nothing)."""
    specs = specs or []
    return specs if split(specs)[0] else [quickstart_path(), *specs]


def shown(spec: Path) -> str:
    """How to name a spec in a hint: nothing for the quickstart, which every command defaults to."""
    return "" if spec == quickstart_path() else f" {spec}"
