"""Lottery vs random reinit vs dense by sparsity, per mask generator (the paper's Figs 2 and 5a/b)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ltspec.layouts.base import Layout, Table, arm_tables
from ltspec.layouts.drawing import accuracy_vs_sparsity

if TYPE_CHECKING:
    from ltspec.report.collect import Results


def lottery_vs_reinit(results: Results) -> list[Table]:
    return arm_tables(results, "lottery-vs-reinit", "Lottery vs random reinit vs dense: test accuracy (%)",
                      lambda start: start in ("init", "reinit"), with_dense=True)


LAYOUT = Layout("lottery-vs-reinit", "lottery vs reinit vs dense by sparsity", lottery_vs_reinit,
                accuracy_vs_sparsity)
