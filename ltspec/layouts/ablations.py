"""Sanity-check ablations: the test accuracy of each arm on a generator's masks beside its controls, by sparsity,
with dense (Frankle et al., ICLR 2021; Zhou et al., NeurIPS 2019; Evci et al., ICML 2020).

The controls of a table's masks: the same arms on the tables made from its masks (its layerwise shuffle) and on
the spec's random masks (magnitude-matched or ERK counts) at the same sparsities. The arms that keep θ0's signs
(`signs-reinit`, `signs-constant`) are columns of their own. A method whose arms train as well on its shuffled
masks found a per-layer sparsity, not which weights to keep; a lottery ticket that trains as well from θ0's signs
with other magnitudes needs only the signs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ltspec import masks
from ltspec.layouts.base import SPARSITY_NOTE, Column, Layout, Table, accuracy_cells, in_order, rows_by_sparsity
from ltspec.layouts.drawing import accuracy_vs_sparsity

if TYPE_CHECKING:
    from ltspec.report.collect import Results

BASELINE = "random"  # the generator whose masks are a control of every other table's at the same sparsity


def controls(results: Results, table: str) -> list[str]:
    """The tables made from `table`'s masks, then the random tables."""
    made_from = [name for point in results.points for name, settings in point.spec.masks.items()
                 if table in masks.generator(settings.kind).sources(settings).values()]
    baselines = [name for point in results.points for name, settings in point.spec.masks.items()
                 if settings.kind == BASELINE]
    return in_order([*made_from, *baselines])


def is_control(results: Results, table: str) -> bool:
    return any(table in controls(results, other) for point in results.points for other in point.spec.masks
               if other != table)


def ablations(results: Results) -> list[Table]:
    tables = []
    signs = any(arm.start.startswith("signs-") for point in results.points for arm in point.spec.arms.values())
    for table in in_order(name for point in results.points for name in point.spec.masks):
        against = controls(results, table)
        if is_control(results, table) or not (against or signs):
            continue
        own = [(point, run) for point in results.points for run in point.plan.arms if run.generator == table]
        targets = {round(run.sparsity, 6): run.sparsity for _, run in own}
        # a control's run at one of the table's sparsities, that sparsity written as the table's (IMP's 0.36 is
        # 1 − 0.8², 0.36000000000000004), so that the two share a row
        beside = [(point, replace(run, sparsity=targets[round(run.sparsity, 6)])) for point in results.points
                  for run in point.plan.arms if run.generator in against and round(run.sparsity, 6) in targets]
        series = in_order((run.generator, run.arm) for _, run in [*own, *beside])
        if not own:
            continue
        names = [arm if generator == table else f"{arm} · {generator}" for generator, arm in series] + ["dense"]
        columns = tuple(Column(point.label, name) for point in results.points for name in names)
        rows = rows_by_sparsity(results, [*own, *beside], accuracy_cells(results, series, with_dense=True))
        tables.append(Table("ablations", f"ablations-{table}",
                            f"Ablations: arms on {table} masks and on their controls, test accuracy (%)",
                            ("sparsity",), columns, rows, percent=True, notes=(SPARSITY_NOTE,)))
    return tables


LAYOUT = Layout("ablations", "sanity-check ablations: each arm beside its controls by sparsity, with dense",
                ablations, accuracy_vs_sparsity)
