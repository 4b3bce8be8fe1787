"""`ltspec init`: a copy of a shipped spec (or any spec) to edit, under a name of its own."""

from __future__ import annotations

from typing import Annotated

import typer

from ltspec.cli.shell import fail, say


def init(name: Annotated[str, typer.Argument(help="The new spec's name; writes NAME.toml here.", show_default=False)],
         source: Annotated[str, typer.Option("--from", help="A shipped spec's name (`ltspec specs`) or a spec file.")]
         = "quickstart"):
    """Copy a spec to edit: NAME.toml in this folder, renamed NAME so that its runs get their own experiment."""
    from ltspec.shipped import copy

    try:
        target = copy(source, name.removesuffix(".toml"))
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        raise fail(str(error)) from None
    say("wrote", "green", f"{target} from {source}: edit it, then `ltspec validate {target}` and `ltspec run {target}`")
