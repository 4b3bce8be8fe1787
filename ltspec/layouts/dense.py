"""The dense test accuracy of each sweep point (the paper's dense baselines)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ltspec.layouts.base import Column, Layout, Row, Table, dense_accuracy

if TYPE_CHECKING:
    from ltspec.report.collect import Results


def dense(results: Results) -> list[Table]:
    columns = tuple(Column(point.label, "dense") for point in results.points)
    cells = tuple(dense_accuracy(results, point) for point in results.points)
    return [Table("dense", "dense", "Dense test accuracy (%)", ("metric",), columns,
                  (Row(("test accuracy",), cells, 0.0),), percent=True, notes=())]


LAYOUT = Layout("dense", "dense test accuracy by sweep point", dense)
