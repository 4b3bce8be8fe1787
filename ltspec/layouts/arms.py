"""Every arm by sparsity, per mask generator, and fine-tuning and lottery across generators (the paper's
Figs 6 and 7)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ltspec.layouts.base import (SPARSITY_NOTE, Column, Layout, Table, accuracy_cells, arm_tables, generators,
                                  in_order, rows_by_sparsity)
from ltspec.layouts.drawing import accuracy_vs_sparsity

if TYPE_CHECKING:
    from ltspec.report.collect import Results


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


LAYOUT = Layout("arms", "every arm by sparsity, per mask generator", every_arm, accuracy_vs_sparsity)
