"""`ltspec report`: the paper's tables, figures and claim checks from the specs' MLflow runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ltspec.cli.shell import OnlyOption, OptionalSpecsArg, fail, fault, load_all, or_quickstart


def report(specs: OptionalSpecsArg = None, only: OnlyOption = [],
           format: Annotated[list[str], typer.Option("--format", "-f", help="File formats: md, tex, csv.")] = [
               "md", "tex", "csv"],
           out: Annotated[Optional[Path], typer.Option(help="Output folder (default: reports/<report name>, the spec's "
                                                            "name, with a suffix for overrides; with several specs, "
                                                            "OUT/<report name>).")] = None):
    """The paper's tables and figures and a check of its claims, from the specs' MLflow runs (mean ± std over seeds)."""
    from rich.console import Console

    from ltspec.faults import EnvironmentFault
    from ltspec.report import write_report
    from ltspec.report.write import report_name

    loaded = load_all(or_quickstart(specs), only, compile=False)  # the report compiles each sweep point itself
    console, codes = Console(), []
    for _, spec_loaded, part in loaded:
        folder = out / report_name(spec_loaded) if out is not None and len(loaded) > 1 else out
        kept = {stage.key for stage in part.stages} if only else None
        try:
            codes.append(write_report(spec_loaded, formats=format, out_dir=folder, console=console, only=kept))
        except EnvironmentFault as error:
            raise fault(error) from None
        except ValueError as error:  # an unknown format, found before anything is written
            raise fail(str(error)) from None
    raise typer.Exit(max(codes))
