"""`ltspec verify`: the store checked without running anything (`ltspec.plan.status.verify`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ltspec.cli.shell import fault, load, quickstart_path, say


def verify(spec: Annotated[Optional[Path], typer.Argument(help="The spec whose store to check; none checks the "
                                                          "quickstart's.", show_default=False)] = None,
           every: Annotated[bool, typer.Option("--all", help="Every stage in the store, not only this spec's.")]
           = False,
           set_aside: Annotated[bool, typer.Option(help="Move damaged files aside (never deleting them) so that "
                                                   "`ltspec run` recomputes their stages.")] = False):
    """Check the store without running anything: every record sound, every artifact it vouches for intact."""
    from ltspec.faults import EnvironmentFault
    from ltspec.plan.status import verify as check
    from ltspec.store import Store

    loaded, compiled = load(spec or quickstart_path())
    store = Store(Path(loaded.spec.storage.root))
    keys = list(store.stage_keys()) if every else [stage.key for stage in compiled.stages]
    try:
        found = check(store, keys, set_aside=set_aside)
    except EnvironmentFault as error:
        raise fault(error) from None
    for damage in found.broken.values():
        for item in damage:
            say("broken:", "red", str(item))
    if not found.broken:
        say("ok", "green", found.summary())
        return
    action = ("their damaged files were moved aside, and `ltspec run` recomputes them" if set_aside else
              "`ltspec verify --set-aside` moves their damaged files aside (never deleting them), then `ltspec run` "
              "recomputes them")
    say("error:", "red", f"{found.summary()}; {action}", err=True)
    raise typer.Exit(1)
