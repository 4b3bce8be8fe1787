"""`ltspec export`: a trained ticket as plain files a notebook loads without ltspec's store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ltspec.cli.shell import fail, load


def export(spec: Annotated[Path, typer.Argument(help="The spec that trained the ticket.", show_default=False)],
           out: Annotated[Path, typer.Option(help="Folder to write into.", show_default=False)],
           generator: Annotated[Optional[str], typer.Option(help="Mask generator, e.g. imp.")] = None,
           sparsity: Annotated[Optional[float], typer.Option(help="Sparsity, e.g. 0.875.")] = None,
           arm: Annotated[Optional[str], typer.Option(help="Arm, e.g. lottery.")] = None,
           seed: Annotated[Optional[int], typer.Option(help="Seed.")] = None,
           sweep: Annotated[list[str], typer.Option("--sweep", metavar="KEY=VALUE",
                                                    help="A sweep value, e.g. lr=0.01; repeat for several.")] = []):
    """Write a trained ticket as plain files: state_dict.pt and mask.pt (for torch.load(weights_only=True)) and
    ticket.json (what it is, its metrics, and the ltspec.nets.build_model arguments its state dict fits).

    A label the spec has one value of may be left out."""
    from ltspec.plan.select import SelectionError, parse_choices
    from ltspec.tickets import TicketError, export as write, load as ticket_of

    loaded, _ = load(spec)
    try:
        choices = {name: values[0] for name, values in parse_choices(sweep).items()}
        ticket = ticket_of(loaded, generator=generator, sparsity=sparsity, arm=arm, seed=seed, **choices)
    except (TicketError, SelectionError) as error:
        raise fail(str(error)) from None
    for path in write(ticket, out):
        typer.echo(f"wrote {path}")
    metrics = ticket.record["metrics"]
    typer.echo(f"{ticket.stage.describe()}: test accuracy {metrics.get('final_test_accuracy', float('nan')):.4f}, "
               f"sparsity {ticket.mask.sparsity():.4f}")
