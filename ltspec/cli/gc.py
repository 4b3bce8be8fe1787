"""`ltspec gc`: the store entries no given spec needs, listed or removed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ltspec.cli.shell import SpecsArg, load_all


def collect(specs: SpecsArg,
            delete: Annotated[bool, typer.Option("--delete", help="Remove them (default: only list them).")] = False):
    """List the store entries that none of the given specs needs (every spec sharing the store must be given);
    --delete removes them. Run it when no run is writing to the store."""
    from ltspec.plan.status import remove, unreferenced
    from ltspec.store import Store

    loaded = load_all(specs)
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
