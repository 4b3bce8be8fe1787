"""`ltspec ui`: the MLflow UI over a spec's runs, with links to where a lottery-ticket user looks first."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ltspec.cli.shell import load, quickstart_path, shown


def ui(spec: Annotated[Optional[Path], typer.Argument(help="The spec whose tracking store to open; none means the "
                                                      "quickstart.", show_default=False)] = None,
       port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000):
    """Start the MLflow UI on 127.0.0.1 over the spec's tracking store, print links to its runs table and to a
    lottery-vs-reinit comparison, and list every run on one page; Ctrl-C (or SIGTERM) stops all of it."""
    from ltspec import ui as mlflow_ui

    loaded, compiled = load(spec or quickstart_path())
    uri, base = loaded.spec.tracking.uri, f"http://127.0.0.1:{port}"
    typer.echo(f"MLflow UI on {base} over {uri} (Ctrl-C stops it)")
    links = mlflow_ui.links(uri, loaded.spec.tracking.experiment or loaded.spec.name, compiled, base)
    for title, url in links:
        typer.echo(f"  {title}: {url}")
    if not links:
        typer.echo(f"  no runs of {loaded.spec.name} yet: `ltspec run{shown(spec or quickstart_path())}` makes them")
    mlflow_ui.serve(uri, port)
