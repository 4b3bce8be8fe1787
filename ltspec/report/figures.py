"""The report's figures: each table drawn by its layout's `figure` (`ltspec.layouts`; the drawings are in
`ltspec.layouts.drawing`), written as PNG and PDF. The files carry no timestamp or version (`METADATA`), so drawing
the same tables twice writes the same bytes."""

from __future__ import annotations

from pathlib import Path

from ltspec.layouts import REGISTRY, Table

FORMATS = ("png", "pdf")
# No date and no version strings in the files, so that the same runs draw the same bytes (a report can be committed
# and diffed): matplotlib stamps a PDF with its creation time and both formats with its version unless told not to.
METADATA = {"png": {"Software": None}, "pdf": {"Creator": None, "Producer": None, "CreationDate": None}}
def write_figures(tables: list[Table], out_dir: Path) -> list[Path]:
    """Draw every table that has a figure and at least one value; returns the files written."""
    written = []
    for table in tables:
        draw = REGISTRY[table.layout].figure
        if draw is None or not any(cell.n for row in table.rows for cell in row.cells):
            continue
        figure = draw(table)
        if figure is None:  # a table its layout leaves undrawn
            continue
        for suffix in FORMATS:
            path = out_dir / f"{table.name}.{suffix}"
            figure.savefig(path, dpi=120, metadata=METADATA[suffix])
            written.append(path)
    return written
