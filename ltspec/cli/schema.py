"""`ltspec schema`: the spec's JSON schema, for TOML editors, with what installed plugins add."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ltspec.cli.shell import fail


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
        raise fail(str(error)) from None
    rebuild()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(schema_text())
    typer.echo(f"wrote {out}")
