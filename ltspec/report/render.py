"""Tables as text: a rich table for the terminal, Markdown, LaTeX (booktabs) and tidy CSV.

A cell reads `mean ± std` over the seeds present. A cell the plan has stages for but MLflow lacks entirely reads
`—`; one with some seeds missing says so, `(n=1/2)`; a cell that does not apply to its column (an arm that one
sweep point lacks) is blank. Every table ends with notes that count the missing runs, so nothing is dropped
without a word. The CSV keeps full precision and raw fractions, one line per cell, for analysis elsewhere.
"""

from __future__ import annotations

import csv
import io
from itertools import groupby

from rich.table import Table as RichTable

from ltspec.report.collect import Stat
from ltspec.report.tables import Table

STATS_NOTE = "Mean ± std over seeds (sample std, ddof = 1)."


def cell_text(stat: Stat, percent: bool, pm: str = "±", dash: str = "—") -> str:
    if stat.expected == 0:
        return ""
    if stat.n == 0:
        return dash
    scale, digits = (100.0, 2) if percent else (1.0, 3)
    text = f"{stat.mean * scale:.{digits}f}"
    if stat.std is not None:
        text += f" {pm} {stat.std * scale:.{digits}f}"
    if stat.n < stat.expected:
        text += f" (n={stat.n}/{stat.expected})"
    return text


def notes(table: Table) -> list[str]:
    """The table's own notes, how cells aggregate, and how many of its runs are missing."""
    keys = {key for row in table.rows for cell in row.cells for key in cell.keys}
    absent = {key for row in table.rows for cell in row.cells for key in cell.absent}
    found = [*table.notes, STATS_NOTE]
    if absent:
        found.append(f"Missing from MLflow: {len(absent)} of {len(keys)} runs; — marks a cell with none of its "
                     "runs, (n=k/m) one with k of its m seeds.")
    return found


def header(column) -> str:
    return f"{column.point} · {column.name}" if column.point else column.name


def rich_table(table: Table) -> RichTable:
    rich = RichTable(title=table.title, caption="\n".join(notes(table)), caption_justify="left")
    for name in table.index:
        rich.add_column(name)
    for column in table.columns:
        rich.add_column(f"{column.point}\n{column.name}" if column.point else column.name, justify="right")
    for row in table.rows:
        rich.add_row(*row.index, *(cell_text(cell, table.percent) for cell in row.cells))
    return rich


def markdown(table: Table) -> str:
    def escape(text: str) -> str:
        return text.replace("|", r"\|").replace("*", r"\*")

    def line(cells) -> str:
        return "| " + " | ".join(escape(cell) for cell in cells) + " |"

    lines = [f"### {escape(table.title)}", "",
             line([*table.index, *map(header, table.columns)]),
             "|" + "---|" * len(table.index) + "---:|" * len(table.columns)]
    lines += [line([*row.index, *(cell_text(cell, table.percent) for cell in row.cells)]) for row in table.rows]
    lines += ["", *(escape(note) + "  " for note in notes(table))]
    return "\n".join(lines).rstrip() + "\n"


LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$",
                  "—": "---"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIALS.get(char, char) for char in text)


def latex(table: Table) -> str:
    """A booktabs table; sweep points become spanning headers over their columns, with a cmidrule under each."""
    def line(cells) -> str:
        return " & ".join(cells) + r" \\"

    groups = [(point, len(list(run))) for point, run in groupby(column.point for column in table.columns)]
    lines = [r"\begin{table}[t]", r"\centering",
             rf"\caption{{{latex_escape(table.title)}. {latex_escape(' '.join(notes(table)))}}}",
             rf"\label{{tab:{table.name}}}",
             rf"\begin{{tabular}}{{{'l' * len(table.index)}{'r' * len(table.columns)}}}",
             r"\toprule"]
    if any(point for point, _ in groups):
        spans, rules, start = [], [], len(table.index) + 1
        for point, width in groups:
            spans.append(rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(point)}}}")
            if point:
                rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
            start += width
        lines += [line([""] * len(table.index) + spans), " ".join(rules)]
    lines += [line(latex_escape(name) for name in [*table.index, *(c.name for c in table.columns)]), r"\midrule"]
    for row in table.rows:
        cells = [cell_text(cell, table.percent, pm=r"$\pm$", dash="---") for cell in row.cells]
        lines.append(line([*map(latex_escape, row.index), *cells]))
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def csv_text(table: Table) -> str:
    """Tidy CSV: one line per applicable cell, with the row labels, its column, mean, std, n and expected n."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*table.index, "point", "column", "mean", "std", "n", "expected"])
    for row in table.rows:
        for column, cell in zip(table.columns, row.cells):
            if cell.expected:
                writer.writerow([*row.index, column.point, column.name, _number(cell.mean), _number(cell.std),
                                 cell.n, cell.expected])
    return out.getvalue()


def _number(value: float | None) -> str:
    return "" if value is None else repr(value)


RENDERERS = {"md": markdown, "tex": latex, "csv": csv_text}
