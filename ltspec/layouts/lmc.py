"""Linear mode connectivity (Frankle et al., ICML 2020): the test error along the straight path between the two
weight points of each `[interpolation]` pair, one panel per pair, and the error barrier of each pair by sparsity.

Tables per mask generator: `lmc-<generator>`, the barrier (percentage points) by sparsity, one column per pair;
`lmc-path-<generator>`, the error at every α by sparsity. A pair of dense points has `lmc-path-dense` (its rows
are α alone).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ltspec.layouts.base import SPARSITY_NOTE, Column, Layout, Row, Table, generators, in_order, sparsity_label
from ltspec.layouts.drawing import lines_by, paths
from ltspec.points import alphas, path_metric

if TYPE_CHECKING:
    from ltspec.kinds.base import Stage
    from ltspec.report.collect import Point, Results

BARRIER = "barrier"
BARRIER_NOTE = ("Error barrier: the largest test error along the path (1 − α)·a + α·b minus the mean of its two "
                "ends' errors, in percentage points; about 0 means the two are linearly connected.")


def pair_name(stage: Stage) -> str:
    return " ~ ".join(stage.config.pair)


def interpolations(point: Point, analysis: str, generator: str | None) -> list[Stage]:
    """The interpolate stages of one point for one analysis, on one generator's masks (None: the dense pairs)."""
    return [stage for stage in point.plan.interpolations if stage.labels.get("analysis") == analysis
            and stage.labels.get("generator") == generator]


def by_sparsity(results: Results, found: list[tuple[Point, Stage]], series: list[str], name, metric: str):
    """Rows by target sparsity (labelled by the measured one); per point, a cell per series over the stages whose
    `name(stage)` it is."""
    rows = []
    for target in sorted({stage.labels["sparsity"] for _, stage in found}):
        there = [(point, stage) for point, stage in found if stage.labels["sparsity"] == target]
        label, x = sparsity_label(results, (stage.parents[1] for _, stage in there), target)
        cells = tuple(results.stat([stage.key for where, stage in there if where is point and name(stage) == chosen],
                                   metric)
                      for point in results.points for chosen in series)
        rows.append(Row((label,), cells, x))
    return tuple(rows)


def lmc(results: Results) -> list[Table]:
    tables = []
    for generator in generators(results):
        found = [(point, stage) for point in results.points for stage in interpolations(point, "lmc", generator)]
        if not found:
            continue
        pairs = in_order(pair_name(stage) for _, stage in found)
        columns = tuple(Column(point.label, pair) for point in results.points for pair in pairs)
        tables.append(Table("lmc", f"lmc-{generator}", f"Error barrier between the pairs on {generator} masks (pp)",
                            ("sparsity",), columns, by_sparsity(results, found, pairs, pair_name, BARRIER),
                            percent=True, notes=(BARRIER_NOTE, SPARSITY_NOTE)))
        tables.append(path_table(results, found, f"lmc-path-{generator}",
                                 f"Test error along the path between the pairs on {generator} masks (%)"))
    dense = [(point, stage) for point in results.points for stage in interpolations(point, "lmc", None)]
    if dense:
        tables.append(path_table(results, dense, "lmc-path-dense",
                                 "Test error along the path between dense points (%)"))
    return tables


def path_table(results: Results, found: list[tuple[Point, Stage]], name: str, title: str) -> Table:
    """The error at every α: rows (sparsity, α), or α alone for dense pairs; one column per point and pair."""
    pairs = in_order(pair_name(stage) for _, stage in found)
    columns = tuple(Column(point.label, pair) for point in results.points for pair in pairs)
    steps = alphas(max(stage.config.points for _, stage in found))
    targets = sorted({stage.labels.get("sparsity") for _, stage in found}, key=lambda target: target or 0.0)
    rows = []
    for target in targets:
        there = [(point, stage) for point, stage in found if stage.labels.get("sparsity") == target]
        label = sparsity_label(results, (stage.parents[1] for _, stage in there), target)[0] if target else "dense"
        for alpha in steps:
            cells = tuple(results.stat([stage.key for where, stage in there if where is point
                                        and pair_name(stage) == pair and alpha in alphas(stage.config.points)],
                                       path_metric(alpha))
                          for point in results.points for pair in pairs)
            rows.append(Row((label, f"{alpha:.2f}"), cells, alpha))
    return Table("lmc", name, title, ("sparsity", "α"), columns, tuple(rows), percent=True,
                 notes=(SPARSITY_NOTE,) if targets != [None] else ())


def figure(table: Table):
    if "-path-" in table.name:
        return paths(table)
    return lines_by("sparsity (%)", "error barrier (percentage points)")(table)


LAYOUT = Layout("lmc", "linear mode connectivity: error along each path and the barrier by sparsity", lmc, figure)
