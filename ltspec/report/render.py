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

from ltspec.report.claims import (ACCURACY_MARGIN, LEVEL, MIN_SEEDS, PAPER_SEEDS, RP_MARGIN, Check, Claim,
                                  Decision, signed)
from ltspec.layouts.base import Stat, Table, in_order

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
CLAIM_RULES = (
    "Each check is a difference paired by seed (both sides from the same seed's runs), averaged per seed over the "
    "sparsities both sides have and, for R_p, over p. Over the seeds it has a mean, a 95% Student-t interval and a "
    "two-sided t-test of the claim's side against the opposite; an accuracy's spread is never taken below one test "
    "example, the step in which an accuracy moves, so seeds that agree by chance make no zero-width interval. "
    "`> 0` (or `> m`) holds when the difference is above the bound, `≈ 0 (± m)` when it is inside ±m (an "
    "equivalence test, TOST), `≥ -m` when it is above -m. Margins: {accuracy:g} accuracy point; for R_p, "
    "{rp:.0%} of p, so `R_p > p` means above p by more than that: the paper's independent pairs read 20.11-20.41% "
    "at p = 20% (Table 1; at most 2.05% of p above it), its correlated ones 48-65%. Multiplicity: within each "
    "claim the p-values are Holm-Bonferroni adjusted over all its checks, so the chance that any outcome in a "
    "claim's table is wrong is at most {level:.0%}; a check holds (or does not hold) when its adjusted p is below "
    "{level:g}, and is inconclusive otherwise. A verdict needs at least {seeds} seeds; with fewer a check is "
    "inconclusive and counts the seeds on the claim's side. A claim does not hold when one of its checks does not, "
    "and holds when all of them hold.").format(accuracy=100 * ACCURACY_MARGIN, rp=RP_MARGIN, level=LEVEL,
                                               seeds=MIN_SEEDS)


def seeds_of(claims: list[Claim]) -> list[int]:
    return in_order(seed for claim in claims for check in claim.checks for seed in check.diff.values)


def outcome_counts(claim: Claim) -> str:
    """How many checks came out which way; below MIN_SEEDS seeds, in how many every seed is on the claim's side."""
    if not claim.checks:
        return "; ".join(item.reason for item in claim.unmeasured)
    counts = Counter(decision.outcome for decision in claim.decisions)
    text = ", ".join(f"{outcome}: {count}" for outcome, count in counts.items())
    untested = [check for check, decision in zip(claim.checks, claim.decisions) if decision.p is None and check.n]
    agreeing = sum(all(map(check.on_claims_side, check.diff.present())) for check in untested)
    if untested:
        text += f" (every seed on the claim's side in {agreeing} of {len(untested)})"
    return text


def statistic(check: Check) -> str:
    """The mean and its 95% interval, or the mean and its number of seeds below MIN_SEEDS."""
    found = check.interval
    if found is not None:
        return "{} [{}, {}]".format(*(signed(value, check.percent) for value in found))
    mean = check.diff.mean()
    return "—" if mean is None else f"{signed(mean, check.percent)} (n={check.n})"


def p_text(p: float | None) -> str:
    return "—" if p is None else "<0.001" if p < 0.001 else f"{p:.3f}"


def check_cells(check: Check, decision: Decision, with_paper: bool) -> list[str]:
    seeds = ", ".join(f"s{seed} {'—' if value is None else signed(value, check.percent)}"
                      for seed, value in check.diff.values.items())
    outcome = f"{decision.outcome}: {decision.note}" if decision.note else decision.outcome
    return [check.where, check.what, seeds, statistic(check), check.requirement(), check.sides,
            *[check.paper] * with_paper, p_text(decision.p), outcome]


def claims_markdown(name: str, claims: list[Claim], overrides: tuple[str, ...] = ()) -> str:
    """claims.md: the rules, a verdict per claim, then each claim's checks with their per-seed numbers, statistic
    and Holm-adjusted p-value; the paper's number where it has one for a check's setting."""
    def line(cells) -> str:
        return "| " + " | ".join(cell.replace("|", r"\|") for cell in cells) + " |"

    seeds = seeds_of(claims)
    title = f"# The paper's claims on {name}" + (f" ({' '.join(overrides)})" if overrides else "")
    lines = [title, "", f"Liu et al., ICML 2021 (arXiv 2102.11068), on {len(seeds)} seed"
             f"{'s' * (len(seeds) != 1)} ({', '.join(map(str, seeds))}). {CLAIM_RULES}", ""]
    if seeds and len(seeds) < MIN_SEEDS:
        lines += [f"**Too few seeds for a verdict: {len(seeds)}, where a verdict needs {MIN_SEEDS}.** Every check "
                  "below is inconclusive and says how many seeds fall on the claim's side, which is what these runs "
                  f"support. To settle them, run the paper's {PAPER_SEEDS} seeds: set "
                  f"`seeds = {list(range(PAPER_SEEDS))}` in the spec, or pass `'seeds={list(range(PAPER_SEEDS))}'` "
                  "to `ltspec run` and then to `ltspec report` (the seeds already run are reused).", ""]
    lines += [line(["claim", "verdict", "checks"]), "|---|---|---|"]
    lines += [line([f"{claim.number}. {claim.statement}", f"**{claim.verdict}**", outcome_counts(claim)])
              for claim in claims]
    for claim in claims:
        lines += ["", f"## {claim.number}. {claim.statement}: {claim.verdict}", ""]
        if claim.checks:
            with_paper = any(check.paper for check in claim.checks)
            header = ["where", "comparison", "per seed", "mean [95% CI]", "needs", "ours", *["paper"] * with_paper,
                      "p (Holm)", "outcome"]
            lines += [line(header), "|---|---|---|---:|---|---|" + "---|" * with_paper + "---:|---|"]
            lines += [line(check_cells(check, decision, with_paper))
                      for check, decision in zip(claim.checks, claim.decisions)]
        for number, item in enumerate(claim.unmeasured):
            lines += [*[""] * (number > 0 or bool(claim.checks)), f"Not measured: {item.reason}."]
            if item.toml:
                lines += ["In the spec, add (or change to) these lines:", "", "```toml", item.toml, "```"]
        if claim.missing:
            shown = "; ".join(claim.missing[:MISSING_SHOWN])
            more = f"; and {len(claim.missing) - MISSING_SHOWN} more" if len(claim.missing) > MISSING_SHOWN else ""
            lines += ["", f"Missing runs ({len(claim.missing)}): {shown}{more}"]
    return "\n".join(lines) + "\n"


def claims_table(claims: list[Claim]) -> RichTable:
    rich = RichTable(title="The paper's claims on these runs (details: claims.md)")
    for name in ("claim", "verdict", "checks"):
        rich.add_column(name)
    for claim in claims:
        rich.add_row(f"{claim.number}. {claim.statement}", claim.verdict, outcome_counts(claim))
    return rich
