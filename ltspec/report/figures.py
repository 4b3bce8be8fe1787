"""The paper's figures, drawn from the same tables the report prints, so a figure never disagrees with its table.

- arm tables (`arms`, `lottery-vs-reinit`, `rewind`): test accuracy against measured sparsity, one line per arm
  with a std band and the dense accuracy as a dashed line, one panel per sweep point (Figs 2, 5a/b, 6);
- `rp-init-trained`: R_p against p, one line per pair, with the R_p = p line of independent weights (Fig 4);
- `rp-masked`: R_p bars by sparsity, one bar per pair, with a dashed line at p (Figs 5c/d).

matplotlib is imported here only, and used through `Figure` objects rather than pyplot, so no global backend is
switched and no window can open: the PNG and PDF writers need no display.
"""

from __future__ import annotations

from math import nan
from pathlib import Path

from ltspec.report.tables import Table, in_order

FORMATS = ("png", "pdf")


def write_figures(tables: list[Table], out_dir: Path) -> list[Path]:
    """Draw every table that has a figure and at least one value; returns the files written."""
    written = []
    for table in tables:
        draw = DRAWERS.get(table.layout)
        if draw is None or not any(cell.n for row in table.rows for cell in row.cells):
            continue
        figure = draw(table)
        for suffix in FORMATS:
            path = out_dir / f"{table.name}.{suffix}"
            figure.savefig(path, dpi=120)
            written.append(path)
    return written


def panels(table: Table, rows: int = 1):
    """A figure with one column of panels per sweep point (and `rows` rows), titled by the table."""
    from matplotlib.figure import Figure

    points = in_order(column.point for column in table.columns)
    figure = Figure(figsize=(4.2 * len(points), 3.4 * rows), layout="constrained")
    figure.suptitle(table.title, fontsize="medium")
    return figure, points, figure.subplots(rows, len(points), squeeze=False, sharey=True)


def series(table: Table, index: int) -> tuple[list[float], list[float], list[float]]:
    """x, mean and std of one column over the rows that have a value (std 0 where a single seed is present)."""
    present = [row for row in table.rows if row.cells[index].n]
    return ([row.x for row in present], [row.cells[index].mean for row in present],
            [row.cells[index].std or 0.0 for row in present])


def colors(table: Table) -> dict[str, str]:
    """One colour per column name, the same in every panel even where a panel lacks some of them."""
    return {name: f"C{number}" for number, name in enumerate(in_order(column.name for column in table.columns))}


def legend(axis) -> None:
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize="small")


def accuracy_vs_sparsity(table: Table):
    figure, points, axes = panels(table)
    color = colors(table)
    for axis, point in zip(axes[0], points):
        for index, column in enumerate(table.columns):
            x, mean, std = series(table, index)
            if column.point != point or not x:
                continue
            if column.name == "dense":
                axis.axhline(100 * mean[0], color="black", linestyle="--", linewidth=1, label="dense")
                axis.axhspan(100 * (mean[0] - std[0]), 100 * (mean[0] + std[0]), color="black", alpha=0.08)
                continue
            x = [100 * value for value in x]
            axis.plot(x, [100 * m for m in mean], marker="o", color=color[column.name], label=column.name)
            axis.fill_between(x, [100 * (m - s) for m, s in zip(mean, std)], [100 * (m + s) for m, s in zip(mean, std)],
                              color=color[column.name], alpha=0.2)
        axis.set_title(point, fontsize="small")
        axis.set_xlabel("sparsity (%)")
        legend(axis)
    axes[0][0].set_ylabel("test accuracy (%)")
    return figure


def rp_vs_p(table: Table):
    figure, points, axes = panels(table)
    color = colors(table)
    for axis, point in zip(axes[0], points):
        for index, column in enumerate(table.columns):
            x, mean, std = series(table, index)
            if column.point == point and x:
                axis.errorbar(x, mean, yerr=std, marker="o", capsize=3, color=color[column.name], label=column.name)
        axis.axline((0, 0), slope=1, color="black", linestyle="--", linewidth=1, label="$R_p = p$")
        axis.set_xticks([row.x for row in table.rows])
        axis.set_title(point, fontsize="small")
        axis.set_xlabel("p")
        legend(axis)
    axes[0][0].set_ylabel("$R_p$")
    return figure


def rp_bars(table: Table):
    """One row of panels per p; bars grouped by sparsity, one per pair; a missing value draws no bar (not 0)."""
    ps = in_order(row.index[1] for row in table.rows)
    figure, points, axes = panels(table, rows=len(ps))
    color = colors(table)
    for axes_row, p in zip(axes, ps):
        rows = [row for row in table.rows if row.index[1] == p]
        for axis, point in zip(axes_row, points):
            indices = [index for index, column in enumerate(table.columns) if column.point == point]
            width = 0.8 / len(indices)
            for offset, index in enumerate(indices):
                name = table.columns[index].name
                axis.bar([position + (offset - (len(indices) - 1) / 2) * width for position in range(len(rows))],
                         [nan if row.cells[index].mean is None else row.cells[index].mean for row in rows], width,
                         yerr=[row.cells[index].std or 0.0 for row in rows], capsize=2, color=color[name], label=name)
            axis.axhline(float(p), color="black", linestyle="--", linewidth=1, label="$R_p = p$")
            axis.set_xticks(range(len(rows)), [row.index[0] for row in rows])
            axis.set_title(f"{point} p={p}".strip(), fontsize="small")
            axis.set_xlabel("sparsity")
        axes_row[0].set_ylabel("$R_p$")
    legend(axes[0][0])
    return figure


DRAWERS = {
    "arms": accuracy_vs_sparsity,
    "lottery-vs-reinit": accuracy_vs_sparsity,
    "rewind": accuracy_vs_sparsity,
    "rp-init-trained": rp_vs_p,
    "rp-masked": rp_bars,
}
