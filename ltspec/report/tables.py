"""The paper's layouts as tables of seed aggregates, built from the plan of every sweep point.

Every cell is a `Stat` over the stages the plan says belong in it, one per seed, so a run MLflow lacks shows as
missing. Columns are sweep points (and, inside a point, arms or R_p pairs), except in Table 1, whose rows are the
points (model x dataset). Rows by sparsity show the sparsity measured from the masks (mean over seeds and points),
not the target: the target is shown, marked, only where no mask run was logged. A layout the plan has no stages
for yields no table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ltspec.kinds import measure
from ltspec.plan import ArmRun, Stage
from ltspec.report.collect import Point, Results, Stat, short_names
from ltspec.points import rp_metric

ACCURACY = "final_test_accuracy"
SPARSITY_NOTE = "Sparsity is measured from the masks (prunable, non-excluded tensors; mean over seeds), not the target."
RP_NOTE = "R_p = p means independent weights, R_p > p positive correlation, R_p = 1 the same magnitude ranking."


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


def build_tables(results: Results, layouts: Iterable[str]) -> list[Table]:
    """The tables of the requested layouts, in the order given, skipping layouts the plan has no stages for."""
    return [table for layout in layouts for table in LAYOUTS[layout](results)]


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


# Accuracy layouts


def dense(results: Results) -> list[Table]:
    columns = tuple(Column(point.label, "dense") for point in results.points)
    cells = tuple(dense_accuracy(results, point) for point in results.points)
    return [Table("dense", "dense", "Dense test accuracy (%)", ("metric",), columns,
                  (Row(("test accuracy",), cells, 0.0),), percent=True, notes=())]


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


def rows_by_sparsity(results: Results, runs: list[tuple[Point, ArmRun]], cells) -> tuple[Row, ...]:
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


def lottery_vs_reinit(results: Results) -> list[Table]:
    return arm_tables(results, "lottery-vs-reinit", "Lottery vs random reinit vs dense: test accuracy (%)",
                      lambda start: start in ("init", "reinit"), with_dense=True)


def every_arm(results: Results) -> list[Table]:
    return [*arm_tables(results, "arms", "Every arm: test accuracy (%)", lambda start: True, with_dense=True),
            *across_generators(results)]


def across_generators(results: Results) -> list[Table]:
    """Fine-tuning and the lottery ticket under every mask generator in one table (the paper's Fig. 7), for a
    spec with two generators or more; a generator's column is blank at a sparsity it has no masks for."""
    if len(generators(results)) < 2:
        return []
    runs = [(point, run) for point in results.points for run in point.plan.arms
            if point.spec.arms[run.arm].start in ("trained", "init")]
    series = in_order((run.generator, run.arm) for _, run in runs)
    if not series:
        return []
    names = [f"{generator} {arm}" for generator, arm in series] + ["dense"]
    columns = tuple(Column(point.label, name) for point in results.points for name in names)
    rows = rows_by_sparsity(results, runs, accuracy_cells(results, series, with_dense=True))
    return [Table("arms", "arms-generators", "Fine-tuning and lottery under every mask generator: test accuracy (%)",
                  ("sparsity",), columns, rows, percent=True, notes=(SPARSITY_NOTE,))]


def rewind(results: Results) -> list[Table]:
    has_rewind = any(arm.start.startswith("rewind@") for point in results.points for arm in point.spec.arms.values())
    if not has_rewind:
        return []
    return arm_tables(results, "rewind", "Rewinding vs lottery vs fine-tuning: test accuracy (%)",
                      lambda start: start.startswith("rewind@") or start in ("init", "trained"), with_dense=True)


# Correlation layouts


def measure_stages(point: Point, generator: str | None) -> list[Stage]:
    """The R_p stages of one point: the dense ones (generator None) or those on one generator's masks."""
    return [stage for stage in point.plan.stages if stage.kind == measure.KIND
            and (len(stage.parents) == 1 if generator is None else stage.labels.get("generator") == generator)]


def rp_stat(results: Results, stages: Iterable[Stage], pair: tuple[str, str], p: float) -> Stat:
    """R_p of one pair at one p over the stages that measure it (none: a cell that does not apply)."""
    keys = [stage.key for stage in stages if tuple(pair) in stage.config.pairs and p in stage.config.p]
    return results.stat(keys, rp_metric(*pair, p))


def has_mask_term(pair: tuple[str, str]) -> bool:
    return any(term.endswith("*mask") for term in pair)


def rp_init_trained(results: Results) -> list[Table]:
    """R_p of the dense pairs, (init, trained) first among them, by p (the paper's Fig. 4)."""
    stages = {point.label: measure_stages(point, None) for point in results.points}
    measured = [stage for found in stages.values() for stage in found]
    if not measured:
        return []
    pairs = in_order(tuple(pair) for stage in measured for pair in stage.config.pairs)
    columns = tuple(Column(point.label, pair_label(pair)) for point in results.points for pair in pairs)
    rows = []
    for p in sorted({p for stage in measured for p in stage.config.p}):
        cells = tuple(rp_stat(results, stages[point.label], pair, p) for point in results.points for pair in pairs)
        rows.append(Row((f"{p:g}",), cells, p))
    return [Table("rp-init-trained", "rp-init-trained", "Weight correlation R_p of dense weights", ("p",),
                  columns, tuple(rows), percent=False, notes=(RP_NOTE,))]


def rp_masked(results: Results) -> list[Table]:
    """R_p of the pairs under a mask, (init*mask, finetune) and (reinit*mask, finetune), by sparsity and p."""
    tables = []
    for generator in generators(results):
        measured = [(point, stage) for point in results.points for stage in measure_stages(point, generator)]
        pairs = in_order(tuple(pair) for _, stage in measured for pair in stage.config.pairs if has_mask_term(pair))
        if not pairs:
            continue
        columns = tuple(Column(point.label, pair_label(pair)) for point in results.points for pair in pairs)
        rows = []
        for target in sorted({stage.labels["sparsity"] for _, stage in measured}):
            at_target = [(point, stage) for point, stage in measured if stage.labels["sparsity"] == target]
            label, x = sparsity_label(results, (stage.parents[1] for _, stage in at_target), target)
            for p in sorted({p for _, stage in at_target for p in stage.config.p}):
                cells = tuple(rp_stat(results, [stage for where, stage in at_target if where is point], pair, p)
                              for point in results.points for pair in pairs)
                rows.append(Row((label, f"{p:g}"), cells, x))
        tables.append(Table("rp-masked", f"rp-masked-{generator}", f"Weight correlation R_p under {generator} masks",
                            ("sparsity", "p"), columns, tuple(rows), percent=False, notes=(SPARSITY_NOTE, RP_NOTE)))
    return tables


def table1(results: Results) -> list[Table]:
    """The paper's Table 1: R_p of a trained arm against dense weights (finetune vs init and trained), by model and
    dataset; its rows are the sweep points."""
    measured = {point.label: [stage for generator in point.spec.masks for stage in measure_stages(point, generator)]
                for point in results.points}
    pairs = in_order(tuple(pair) for found in measured.values() for stage in found for pair in stage.config.pairs
                     if not has_mask_term(pair))
    if not pairs:
        return []
    swept = short_names([path for path, _ in results.points[0].values])
    others = [path for path in swept if path not in ("model.arch", "data.dataset")]
    rows = []
    for point in results.points:
        settings = dict(point.values)
        for generator in point.spec.masks:
            at_generator = [stage for stage in measured[point.label] if stage.labels["generator"] == generator]
            for target in sorted({stage.labels["sparsity"] for stage in at_generator}):
                at_target = [stage for stage in at_generator if stage.labels["sparsity"] == target]
                label, x = sparsity_label(results, (stage.parents[1] for stage in at_target), target)
                for p in sorted({p for stage in at_target for p in stage.config.p}):
                    index = (point.spec.model.arch, point.spec.data.dataset,
                             *(str(settings[path]) for path in others), generator, label, f"{p:g}")
                    rows.append(Row(index, tuple(rp_stat(results, at_target, pair, p) for pair in pairs), x))
    index_names = ("model", "dataset", *(swept[path] for path in others), "generator", "sparsity", "p")
    return [Table("table1", "table1", "Table 1: weight correlation R_p of the trained sparse network",
                  index_names, tuple(Column("", pair_label(pair)) for pair in pairs), tuple(rows), percent=False,
                  notes=(SPARSITY_NOTE, RP_NOTE))]


LAYOUTS: dict[str, Callable[[Results], list[Table]]] = {
    "dense": dense,
    "lottery-vs-reinit": lottery_vs_reinit,
    "rp-init-trained": rp_init_trained,
    "rp-masked": rp_masked,
    "arms": every_arm,
    "table1": table1,
    "rewind": rewind,
}
