"""Rewinding vs lottery vs fine-tuning by sparsity (the paper's App. G)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ltspec.layouts.base import Layout, Table, arm_tables
from ltspec.layouts.drawing import accuracy_vs_sparsity

if TYPE_CHECKING:
    from ltspec.report.collect import Results


def rewind(results: Results) -> list[Table]:
    has_rewind = any(arm.start.startswith("rewind@") for point in results.points for arm in point.spec.arms.values())
    if not has_rewind:
        return []
    return arm_tables(results, "rewind", "Rewinding vs lottery vs fine-tuning: test accuracy (%)",
                      lambda start: start.startswith("rewind@") or start in ("init", "trained"), with_dense=True)


LAYOUT = Layout("rewind", "rewinding vs lottery vs fine-tuning by sparsity", rewind, accuracy_vs_sparsity)
