"""Instability analysis (Frankle et al., ICML 2020): the error barrier between an arm and its copies trained under
other SGD noise, by sparsity, one line per arm (its start: `init`, `rewind@k`, ...), per mask generator.

The paper's finding at scale: IMP tickets rewound to `init` are unstable (a barrier well above 0) and become
stable when rewound to an early epoch k; on small networks they are stable from `init` on. Each cell is over every
seed and copy (n = seeds × copies).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ltspec.layouts.base import SPARSITY_NOTE, Column, Layout, Table, generators, in_order
from ltspec.layouts.drawing import lines_by
from ltspec.layouts.lmc import BARRIER, BARRIER_NOTE, by_sparsity, interpolations

if TYPE_CHECKING:
    from ltspec.report.collect import Results

COPIES_NOTE = "Each cell is over every seed and every copy of the arm (n = seeds × copies)."


def instability(results: Results) -> list[Table]:
    tables = []
    for generator in generators(results):
        found = [(point, stage) for point in results.points
                 for stage in interpolations(point, "instability", generator)]
        if not found:
            continue
        arms = in_order(stage.labels["arm"] for _, stage in found)
        starts = {arm: point.spec.arms[arm].start for point in results.points for arm in arms if arm in point.spec.arms}
        columns = tuple(Column(point.label, f"{arm} ({starts[arm]})") for point in results.points for arm in arms)
        rows = by_sparsity(results, found, arms, lambda stage: stage.labels["arm"], BARRIER)
        tables.append(Table("instability", f"instability-{generator}",
                            f"Instability: error barrier between copies under other SGD noise, {generator} masks (pp)",
                            ("sparsity",), columns, rows, percent=True, notes=(BARRIER_NOTE, COPIES_NOTE,
                                                                                SPARSITY_NOTE)))
    return tables


LAYOUT = Layout("instability", "instability: the barrier between an arm's copies by sparsity, a line per start",
                instability, lines_by("sparsity (%)", "error barrier (percentage points)"))
