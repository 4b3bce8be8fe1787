"""What a report layout is, and what the layouts are made of: tables of seed aggregates built from the plan of
every sweep point.

A layout is a `Layout` record, declared in one module of this package and listed once in its registry
(`ltspec/layouts/__init__.py`), as a mask generator is: its `name` (what `[report] layouts` says; the spec's
vocabulary and the JSON schema are built from the registry), its `tables(results)` and the `figure(table)` that
draws each of them (None: tables only; a figure may also return None for a table it leaves undrawn). Every cell is a `Stat` over the stages the plan says belong in it, one per seed, so a
run MLflow lacks shows as missing. Columns are sweep points (and, inside a point, arms or R_p pairs), except in
Table 1, whose rows are the points (model x dataset). Rows by sparsity show the sparsity measured from the masks
(mean over seeds and points), not the target: the target is shown, marked, only where no mask run was logged. A
layout the plan has no stages for yields no table.

Nothing here imports MLflow, torch or matplotlib (drawing imports it when it draws): the spec reads the registry.
A layout reads the report's `Results` (`ltspec.report.collect`) through what it offers: `points` (each with its
`spec`, `plan` and `label`) and `stat(keys, metric)`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ltspec.points import rp_metric

ACCURACY = "final_test_accuracy"
SPARSITY_NOTE = "Sparsity is measured from the masks (prunable, non-excluded tensors; mean over seeds), not the target."
RP_NOTE = "R_p = p means independent weights, R_p > p positive correlation, R_p = 1 the same magnitude ranking."


@dataclass(frozen=True)
class Stat:
    """One metric over the stages of one table cell (one per seed), None where a stage has no finished run.

    Mean and std are over the values present; the std is the sample standard deviation (ddof = 1), undefined
    below two values.
    """

    keys: tuple[str, ...]
    values: tuple[float | None, ...]

    @property
    def present(self) -> tuple[float, ...]:
        return tuple(value for value in self.values if value is not None)

    @property
    def absent(self) -> tuple[str, ...]:
        return tuple(key for key, value in zip(self.keys, self.values) if value is None)

    @property
    def n(self) -> int:
        return len(self.present)

    @property
    def expected(self) -> int:
        return len(self.keys)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.present) if self.present else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.present) if self.n >= 2 else None



class Point(Protocol):
    """A sweep point as a layout reads it (`ltspec.report.collect.Point`): its column label, the values it sets,
    its spec and the plan of its stages alone."""

    label: str
    values: tuple[tuple[str, Any], ...]
    spec: Any
    plan: Any


class Results(Protocol):
    """What a layout reads (`ltspec.report.collect.Results`): the sweep points, and a metric over stages."""

    points: tuple[Point, ...]

    def stat(self, keys: Iterable[str], metric: str) -> Stat:
        """The metric over these stages, one value per stage, None where its run is missing."""


@dataclass(frozen=True)
class Column:
    """A value column: the sweep point it belongs to ("" when the rows are the points) and what it shows."""

    point: str
    name: str


@dataclass(frozen=True)
class Row:
    """Row labels, one cell per column, and where the row sits on a figure's x axis (sparsity or p)."""

    index: tuple[str, ...]
    cells: tuple[Stat, ...]
    x: float


@dataclass(frozen=True)
class Table:
    """One rendered table: `name` is its file stem, `percent` shows fractions (accuracies) as percentages."""

    layout: str
    name: str
    title: str
    index: tuple[str, ...]
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    percent: bool
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Layout:
    """One of the report's layouts: its tables from the results, and how each is drawn (None: a table only)."""

    name: str
    description: str
    tables: Callable[[Results], list[Table]]
    figure: Callable[[Table], Any] | None = None


def short_names(paths: list[str]) -> dict[str, str]:
    """`train.lr` -> `lr` for column headers, unless two swept paths end in the same field."""
    leaves = [path.rsplit(".", 1)[-1] for path in paths]
    return {path: leaf if leaves.count(leaf) == 1 else path for path, leaf in zip(paths, leaves)}



def pair_label(pair: Iterable[str]) -> str:
    return "R({}, {})".format(*pair)


def sparsity_label(results: Results, masks: Iterable[str], target: float) -> tuple[str, float]:
    """The measured sparsity of a row's masks, or the target (marked) when none of them was logged."""
    measured = results.stat(masks, "sparsity").mean
    if measured is None:
        return f"{target:.1%} (target)", target
    return f"{measured:.1%}", measured


def in_order(items: Iterable) -> list:
    """Distinct items in order of first appearance."""
    return list(dict.fromkeys(items))


def generators(results: Results) -> list[str]:
    return in_order(name for point in results.points for name in point.spec.masks)


def dense_accuracy(results: Results, point: Point) -> Stat:
    return results.stat((trunk.key for trunk in point.plan.trunks), ACCURACY)



def arm_tables(results: Results, layout: str, title: str, chosen: Callable[[str], bool],
               with_dense: bool) -> list[Table]:
    """Test accuracy of the arms whose start `chosen` accepts, by sparsity, one table per mask generator."""
    tables = []
    for generator in generators(results):
        runs = [(point, run) for point in results.points for run in point.plan.arms if run.generator == generator
                and chosen(point.spec.arms[run.arm].start)]
        arms = in_order(run.arm for _, run in runs)
        if not arms:
            continue
        names = arms + ["dense"] * with_dense
        columns = tuple(Column(point.label, name) for point in results.points for name in names)
        rows = rows_by_sparsity(results, runs, accuracy_cells(results, [(generator, arm) for arm in arms], with_dense))
        tables.append(Table(layout, f"{layout}-{generator}", f"{title} on {generator} masks",
                            ("sparsity",), columns, rows, percent=True, notes=(SPARSITY_NOTE,)))
    return tables


def rows_by_sparsity(results: Results, runs: list[tuple[Point, Any]], cells) -> tuple[Row, ...]:
    """One row per target sparsity of `runs`, labelled by the measured sparsity, its cells `cells(runs there)`."""
    rows = []
    for target in sorted({run.sparsity for _, run in runs}):
        at_target = [(point, run) for point, run in runs if run.sparsity == target]
        label, x = sparsity_label(results, (run.mask for _, run in at_target), target)
        rows.append(Row((label,), tuple(cells(at_target)), x))
    return tuple(rows)


def accuracy_cells(results: Results, series: list[tuple[str, str]], with_dense: bool):
    """The cells of a row: per sweep point, the accuracy of each (generator, arm) of `series`, then dense."""
    def cells(at_target):
        for point in results.points:
            for chosen in series:
                yield results.stat([run.stage for where, run in at_target if where is point
                                    and (run.generator, run.arm) == chosen], ACCURACY)
            if with_dense:
                yield dense_accuracy(results, point)
    return cells



def measure_stages(point: Point, generator: str | None) -> list:
    """The R_p stages of one point: the dense ones (generator None) or those on one generator's masks."""
    return [stage for stage in point.plan.measures
            if (len(stage.parents) == 1 if generator is None else stage.labels.get("generator") == generator)]


def rp_stat(results: Results, stages: Iterable, pair: tuple[str, str], p: float) -> Stat:
    """R_p of one pair at one p over the stages that measure it (none: a cell that does not apply)."""
    keys = [stage.key for stage in stages if tuple(pair) in stage.config.pairs and p in stage.config.p]
    return results.stat(keys, rp_metric(*pair, p))


def has_mask_term(pair: tuple[str, str]) -> bool:
    return any(term.endswith("*mask") for term in pair)
