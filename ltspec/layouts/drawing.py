"""How the layouts' figures are drawn, from the same tables the report prints, so a figure never disagrees with its
table: panels three to a row, one legend below them titled by what the bands or bars are and over how many seeds.

- `accuracy_vs_sparsity` (`arms`, `lottery-vs-reinit`, `rewind`): test accuracy against measured sparsity, one line
  per arm with a std band and the dense accuracy as a dashed line, one panel per sweep point (Figs 2, 5a/b, 6, 7,
  G13);
- `rp_vs_p` (`rp-init-trained`): R_p against p, one line per pair, with the R_p = p line of independent weights
  (Fig 4);
- `rp_bars` (`rp-masked`): R_p bars by sparsity, one bar per pair, with a dashed line at p, one row of panels per
  sweep point and one column per p (Figs 5c/d).

matplotlib is imported only when a figure is drawn, and used through `Figure` objects rather than pyplot, so no
global backend is switched and no window can open: the PNG and PDF writers need no display.
"""

from __future__ import annotations

import textwrap
from math import nan

from ltspec.layouts.base import Table, in_order

MAX_COLUMNS = 3
LEGEND_ENTRY_INCHES = 2.2


def panels(table: Table, count: int, rows: int | None = None, columns: int | None = None,
           size: tuple[float, float] = (4.2, 3.4)):
    """A grid of `count` panels titled by the table: by default at most three to a row, so a figure with many
    sweep points wraps onto a page instead of running off its side. Unused cells of the grid are hidden."""
    from matplotlib.figure import Figure

    columns = columns or min(MAX_COLUMNS, count)
    rows = rows or -(-count // columns)
    figure = Figure(figsize=(size[0] * columns, size[1] * rows + 0.6), layout="constrained")
    figure.suptitle(fill(table.title, int(size[0] * columns * 13)), fontsize="medium")
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True)
    for axis in list(axes.flat)[count:]:
        axis.set_visible(False)
    return figure, axes


def fill(text: str, width: int) -> str:
    """Wrap a title at about `width` characters, so a long one breaks onto lines instead of being clipped."""
    return textwrap.fill(text, max(width, 20))


def seeds_note(table: Table) -> str:
    """What a band or error bar is, with the number of seeds behind it."""
    counts = sorted({cell.n for row in table.rows for cell in row.cells if cell.n})
    n = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    return f"mean ± one std over n = {n} seed{'s' * (counts[-1] != 1)}"


def finish(figure, axes, ylabel: str, title: str):
    """How every figure of panels ends: `ylabel` on the first panel of each row, and one legend for the whole
    figure, below the panels, each label once, titled by what the bands mean."""
    for row in axes:
        row[0].set_ylabel(ylabel)
    found: dict[str, object] = {}
    for axis in axes.flat:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            found.setdefault(label, handle)
    if found:
        columns = max(1, min(len(found), int(figure.get_figwidth() / LEGEND_ENTRY_INCHES)))
        figure.legend(list(found.values()), list(found), loc="outside lower center", ncols=columns,
                      fontsize="small", title=title, title_fontsize="small")
    return figure


def series(table: Table, index: int) -> tuple[list[float], list[float], list[float]]:
    """x, mean and std of one column over the rows that have a value (std 0 where a single seed is present)."""
    present = [row for row in table.rows if row.cells[index].n]
    return ([row.x for row in present], [row.cells[index].mean for row in present],
            [row.cells[index].std or 0.0 for row in present])


def colors(table: Table) -> dict[str, str]:
    """One colour per column name, the same in every panel even where a panel lacks some of them."""
    return {name: f"C{number}" for number, name in enumerate(in_order(column.name for column in table.columns))}


def lines_by(xlabel: str, ylabel: str, x_scale: float = 100.0):
    """A drawing of a table whose rows sit on an x axis (a sparsity, shown × `x_scale`; a round; an epoch): one
    line per column name with a std band, one panel per sweep point, a `dense` column as a dashed line; values of
    a `percent` table shown × 100."""
    def draw(table: Table):
        points = in_order(column.point for column in table.columns)
        figure, axes = panels(table, len(points))
        color = colors(table)
        scale = 100 if table.percent else 1
        for axis, point in zip(axes.flat, points):
            for index, column in enumerate(table.columns):
                x, mean, std = series(table, index)
                if column.point != point or not x:
                    continue
                if column.name == "dense":
                    axis.axhline(scale * mean[0], color="black", linestyle="--", linewidth=1, label="dense")
                    axis.axhspan(scale * (mean[0] - std[0]), scale * (mean[0] + std[0]), color="black", alpha=0.08)
                    continue
                x = [x_scale * value for value in x]
                axis.plot(x, [scale * m for m in mean], marker="o", color=color[column.name], label=column.name)
                axis.fill_between(x, [scale * (m - s) for m, s in zip(mean, std)],
                                  [scale * (m + s) for m, s in zip(mean, std)], color=color[column.name], alpha=0.2)
            axis.set_title(fill(point, 40), fontsize="small")
            axis.set_xlabel(xlabel)
        return finish(figure, axes, ylabel, f"lines and bands: {seeds_note(table)}")

    return draw


accuracy_vs_sparsity = lines_by("sparsity (%)", "test accuracy (%)")


def paths(table: Table):
    """The error along each path: one panel per column (a sweep point's pair), error (%) against α, one line per
    sparsity (the rows' first index) with a std band."""
    figure, axes = panels(table, len(table.columns))
    groups = in_order(row.index[0] for row in table.rows)
    color = {group: f"C{number}" for number, group in enumerate(groups)}
    for axis, (index, column) in zip(axes.flat, enumerate(table.columns)):
        for group in groups:
            rows = [row for row in table.rows if row.index[0] == group and row.cells[index].n]
            mean = [100 * row.cells[index].mean for row in rows]
            std = [100 * (row.cells[index].std or 0.0) for row in rows]
            x = [row.x for row in rows]
            axis.plot(x, mean, marker=".", color=color[group], label=group)
            axis.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                              color=color[group], alpha=0.2)
        axis.set_title(fill(f"{column.point} {column.name}".strip(), 40), fontsize="small")
        axis.set_xlabel("α")
    return finish(figure, axes, "test error (%)", f"sparsity; bands: {seeds_note(table)}")


def matrices(table: Table):
    """One annotated matrix per sweep point and sparsity (the rows' first index): the mean of each cell, row name
    (the rows' second index) against column name, on a 0–1 scale, 1 on the diagonal (a mask with itself)."""
    from itertools import product

    from matplotlib.figure import Figure

    points = in_order(column.point for column in table.columns)
    panes = list(product(points, in_order(row.index[0] for row in table.rows)))
    names = {group: in_order(row.index[1] for row in table.rows if row.index[0] == group) for _, group in panes}
    side = 0.65 * max(len(found) for found in names.values()) + 1.8
    columns = min(MAX_COLUMNS, len(panes))
    figure = Figure(figsize=(side * columns + 1.0, side * -(-len(panes) // columns) + 0.8), layout="constrained")
    figure.suptitle(fill(table.title, int(side * columns * 13)), fontsize="medium")
    axes = figure.subplots(-(-len(panes) // columns), columns, squeeze=False)
    for axis in list(axes.flat)[len(panes):]:
        axis.set_visible(False)
    image = None
    for axis, (point, group) in zip(axes.flat, panes):
        here = names[group]
        values = [[1.0 if a == b else nan for b in here] for a in here]
        for row in table.rows:
            for index, column in enumerate(table.columns):
                if row.index[0] == group and column.point == point and column.name in here and row.cells[index].n:
                    values[here.index(row.index[1])][here.index(column.name)] = row.cells[index].mean
        image = axis.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis")
        for i, j in product(range(len(here)), repeat=2):
            if values[i][j] == values[i][j]:  # not nan: a pair that was compared
                axis.text(j, i, f"{values[i][j]:.2f}", ha="center", va="center", fontsize="small",
                          color="white" if values[i][j] < 0.6 else "black")
        axis.set_xticks(range(len(here)), here, rotation=30, ha="right", fontsize="small")
        axis.set_yticks(range(len(here)), here, fontsize="small")
        axis.set_title(fill(f"{point} sparsity {group}".strip(), 40), fontsize="small")
    figure.colorbar(image, ax=axes, shrink=0.8, label=seeds_note(table).replace(" ± one std", ""))
    return figure


def rp_vs_p(table: Table):
    points = in_order(column.point for column in table.columns)
    figure, axes = panels(table, len(points))
    color = colors(table)
    ps = [row.x for row in table.rows]
    for axis, point in zip(axes.flat, points):
        for index, column in enumerate(table.columns):
            x, mean, std = series(table, index)
            if column.point == point and x:
                axis.errorbar(x, mean, yerr=std, marker="o", capsize=3, color=color[column.name], label=column.name)
        axis.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="$R_p = p$ (independent)")
        axis.set_xlim(0, min(1.0, max(ps) + 0.05))
        axis.set_ylim(0, 1.02)
        axis.set_xticks(ps)
        axis.set_title(fill(point, 40), fontsize="small")
        axis.set_xlabel("p")
    return finish(figure, axes, "$R_p$", f"error bars: {seeds_note(table)}")


def rp_bars(table: Table):
    """One row of panels per sweep point and one column per p, small enough to fit a page; bars grouped by
    sparsity, one per pair; a missing value draws no bar (not 0)."""
    ps = in_order(row.index[1] for row in table.rows)
    points = in_order(column.point for column in table.columns)
    figure, axes = panels(table, len(points) * len(ps), rows=len(points), columns=len(ps),
                         size=(2.8 if len(ps) > 1 else 4.2, 2.4))
    color = colors(table)
    for axes_row, point in zip(axes, points):
        indices = [index for index, column in enumerate(table.columns) if column.point == point]
        width = 0.8 / len(indices)
        for axis, p in zip(axes_row, ps):
            rows = [row for row in table.rows if row.index[1] == p]
            for offset, index in enumerate(indices):
                name = table.columns[index].name
                axis.bar([position + (offset - (len(indices) - 1) / 2) * width for position in range(len(rows))],
                         [nan if row.cells[index].mean is None else row.cells[index].mean for row in rows], width,
                         yerr=[row.cells[index].std or 0.0 for row in rows], capsize=2, color=color[name], label=name)
            axis.axhline(float(p), color="black", linestyle="--", linewidth=1, label="$R_p = p$ (independent)")
            axis.set_xticks(range(len(rows)), [row.index[0] for row in rows], fontsize="x-small")
            axis.set_ylim(0, 1.02)
            axis.set_title(f"{point} p={p}".strip(), fontsize="small")
    for axis in axes[-1]:
        axis.set_xlabel("sparsity")
    return finish(figure, axes, "$R_p$", f"error bars: {seeds_note(table)}")


DRAWERS = {
    "arms": accuracy_vs_sparsity,
    "lottery-vs-reinit": accuracy_vs_sparsity,
    "rewind": accuracy_vs_sparsity,
    "rp-init-trained": rp_vs_p,
    "rp-masked": rp_bars,
}
