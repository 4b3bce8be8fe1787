"""`ltspec specs`: the specs that come with ltspec, with what each is for."""

from __future__ import annotations

import typer

from ltspec.cli.shell import frozen_at_exit


@frozen_at_exit
def specs():
    """List the specs that come with ltspec, with what each is for; `ltspec init NAME --from SPEC` copies one."""
    from ltspec.shipped import description, shipped

    known = shipped()
    width = max(map(len, known))
    for name, path in known.items():
        typer.echo(f"{name:<{width}}  {description(path)}")
