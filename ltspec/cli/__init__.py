"""The `ltspec` command: a thin shell over the library, one module per command, listed once in `COMMANDS`.

A command parses its arguments, calls the library and renders the result. `validate`, `plan` and `schema` never
import torch or mlflow; the commands that train or read runs import them when called, and `--help` imports neither
pydantic nor the spec. Adding a command is one module here with its function and one line in `COMMANDS`.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from ltspec.cli import export, gc, init, plan, report, run, schema, specs, ui, validate, verify

# Plain click help (rich_markup_mode=None): flags read `--json`, not `--json <bool>`, and `--help` imports no rich.
app = typer.Typer(add_completion=True, rich_markup_mode=None, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Compile lottery-ticket experiment specs into plans, run them, and report the paper's tables.")

COMMANDS = {
    "validate": validate.validate,
    "plan": plan.plan,
    "schema": schema.schema,
    "run": run.run,
    "report": report.report,
    "verify": verify.verify,
    "ui": ui.ui,
    "specs": specs.specs,
    "init": init.init,
    "export": export.export,
    "gc": gc.collect,
}


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
    # OpenMP threads that spin while they wait make multi-threaded CPU training many times slower whenever another
    # process shares the cores (benchmarks/threads.py). Stages train on `resources.cpus` threads, one by default,
    # where the policy has nobody to wait for, so it matters only where a user asks for more threads: there passive
    # waiting is the setting that never collapses. Set by the command (the process that starts torch, and whose
    # environment its workers inherit), before any command imports torch; a user's value wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


for name, command in COMMANDS.items():
    app.command(name=name)(command)
