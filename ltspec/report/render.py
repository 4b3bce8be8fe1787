"""Tables as text: a rich table for the terminal, Markdown, LaTeX (booktabs) and tidy CSV.

A cell reads `mean ± std` over the seeds present. A cell the plan has stages for but MLflow lacks entirely reads
`—`; one with some seeds missing says so, `(n=1/2)`; a cell that does not apply to its column (an arm that one
sweep point lacks) is blank. Every table ends with notes that count the missing runs, so nothing is dropped
without a word. The CSV keeps full precision and raw fractions, one line per cell, for analysis elsewhere.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from itertools import groupby

from rich.table import Table as RichTable

from ltspec.report.claims import Check, Claim
from ltspec.report.collect import Stat
from ltspec.report.tables import Table, in_order

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


def rich_tables(table: Table) -> list[RichTable]:
    """The table for a terminal, narrow enough not to cut headers at 80 columns or wrap a `mean ± std` cell at 120.

    A table becomes one table per sweep point (the point in its title), except a single row with one column per
    point (dense accuracy), which is turned so that the points are its rows. Files keep the full layout.
    """
    points = in_order(column.point for column in table.columns)
    if len(points) == len(table.columns) > 1 and len(table.rows) == 1:
        rich = RichTable(title=table.title, caption="\n".join(notes(table)), caption_justify="left")
        rich.add_column("point")
        for row in table.rows:
            rich.add_column(" ".join(row.index), justify="right", no_wrap=True)
        for index, point in enumerate(points):
            rich.add_row(point, *(cell_text(row.cells[index], table.percent) for row in table.rows))
        return [rich]
    tables = []
    for point in points:
        chosen = [index for index, column in enumerate(table.columns) if column.point == point]
        rich = RichTable(title=f"{table.title}: {point}" if point else table.title)
        for name in table.index:
            rich.add_column(name, no_wrap=True)
        for index in chosen:
            rich.add_column(table.columns[index].name, justify="right")
        for row in table.rows:
            cells = [cell_text(row.cells[index], table.percent) for index in chosen]
            if any(cells):
                rich.add_row(*row.index, *cells)
        tables.append(rich)
    tables[-1].caption, tables[-1].caption_justify = "\n".join(notes(table)), "left"
    return tables


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


# The paper's claims (ltspec.report.claims)


MISSING_SHOWN = 20  # a claim on a half-run paper can lack thousands of runs; name the first ones
CLAIM_RULES = ("Each check is a difference paired by seed, with its mean and 95% Student-t interval over the seeds; "
               "`> 0` holds when the interval is above 0, `≈ 0 (± m)` when it lies inside ±m, `≥ -m` when it is "
               "above -m; it does not hold when the interval lies wholly on the wrong side, and is inconclusive "
               "otherwise (more seeds narrow it). Accuracy differences are in points, averaged per seed over the "
               "sparsities both arms have; R_p differences average over the measured sparsities and p. A claim "
               "does not hold when one check does not, and holds when all hold.")


def outcome_counts(claim: Claim) -> str:
    if not claim.checks:
        return "; ".join(claim.unmeasured)
    counts = Counter(check.outcome for check in claim.checks)
    return ", ".join(f"{outcome}: {count}" for outcome, count in counts.items())


def signed(value: float, percent: bool) -> str:
    return f"{value * 100:+.2f}" if percent else f"{value:+.3f}"


def check_cells(check: Check) -> list[str]:
    seeds = ", ".join(f"s{seed} {'—' if value is None else signed(value, check.percent)}"
                      for seed, value in check.diff.values.items())
    found = check.interval
    statistic = "—" if found is None else "{} [{}, {}]".format(*(signed(value, check.percent) for value in found))
    return [check.where, check.what, seeds, statistic, check.requirement(), check.sides, check.paper, check.outcome]


def claims_markdown(name: str, claims: list[Claim]) -> str:
    """claims.md: a verdict per claim, then each claim's checks with their per-seed numbers and statistic."""
    def line(cells) -> str:
        return "| " + " | ".join(cell.replace("|", r"\|") for cell in cells) + " |"

    lines = [f"# The paper's claims on {name}", "", "Liu et al., ICML 2021 (arXiv 2102.11068). " + CLAIM_RULES, "",
             line(["claim", "verdict", "checks"]), "|---|---|---|"]
    lines += [line([f"{claim.number}. {claim.statement}", f"**{claim.verdict}**", outcome_counts(claim)])
              for claim in claims]
    for claim in claims:
        lines += ["", f"## {claim.number}. {claim.statement}: {claim.verdict}", ""]
        if claim.checks:
            lines += [line(["where", "comparison", "per seed", "mean [95% CI]", "needs", "ours", "paper", "outcome"]),
                      "|---|---|---|---:|---|---|---|---|"]
            lines += [line(check_cells(check)) for check in claim.checks]
        lines += [f"Not measured: {reason}  " for reason in claim.unmeasured]
        if claim.missing:
            shown = "; ".join(claim.missing[:MISSING_SHOWN])
            more = f"; and {len(claim.missing) - MISSING_SHOWN} more" if len(claim.missing) > MISSING_SHOWN else ""
            lines.append(f"Missing runs ({len(claim.missing)}): {shown}{more}")
    return "\n".join(lines) + "\n"


def claims_table(claims: list[Claim]) -> RichTable:
    rich = RichTable(title="The paper's claims on these runs (details: claims.md)")
    for name in ("claim", "verdict", "checks"):
        rich.add_column(name)
    for claim in claims:
        rich.add_row(f"{claim.number}. {claim.statement}", claim.verdict, outcome_counts(claim))
    return rich
