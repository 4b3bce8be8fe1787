"""`ltspec report`: the paper's tables, figures and claim checks from the specs' MLflow runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ltspec.cli.shell import OnlyOption, OptionalSpecsArg, RehearseOption, fail, fault, load_all, or_quickstart


def report(specs: OptionalSpecsArg = None, only: OnlyOption = [],
           format: Annotated[Optional[list[str]], typer.Option(
               "--format", "-f", help="A table file format: md, tex or csv (repeat it for several; default: all).")
           ] = None,
           out: Annotated[Optional[Path], typer.Option(help="Output folder (default: reports/<report name>, the spec's "
                                                            "name, with a suffix for overrides; with several specs, "
                                                            "OUT/<report name>).")] = None,
           rehearse: RehearseOption = False):
    """The paper's tables and figures and a check of its claims, from the specs' MLflow runs (mean ± std over seeds);
    `--rehearse`: of their rehearsals (`ltspec run --rehearse`), into reports/<spec name>-rehearsal."""
    from rich.console import Console

    # the report compiles each sweep point itself
    loaded = load_all(or_quickstart(specs), only, compile=False, rehearse=rehearse)
    raise typer.Exit(max(write_reports(loaded, bool(only), format, out, Console())))


def write_reports(loaded: list[tuple], only: bool, formats: list[str] | None, out: Path | None,
                  console) -> list[int]:
    """Each spec's report (of the stages `--only` kept, if `only`) in `formats` (None: all); the exit code of each."""
    from ltspec.faults import EnvironmentFault
    from ltspec.report import write_report
    from ltspec.report.write import report_name

    codes = []
    for _, spec_loaded, part in loaded:
        folder = out / report_name(spec_loaded) if out is not None and len(loaded) > 1 else out
        kept = {stage.key for stage in part.stages} if only else None
        try:
            codes.append(write_report(spec_loaded, formats=formats, out_dir=folder, console=console, only=kept))
        except EnvironmentFault as error:
            raise fault(error) from None
        except ValueError as error:  # an unknown format, found before anything is written
            raise fail(str(error)) from None
    return codes
