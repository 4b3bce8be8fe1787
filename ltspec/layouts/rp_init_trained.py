"""R_p of the dense pairs, (init, trained) first, by p (the paper's Fig. 4)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ltspec.layouts.base import RP_NOTE, Column, Layout, Row, Table, in_order, measure_stages, pair_label, rp_stat
from ltspec.layouts.drawing import rp_vs_p

if TYPE_CHECKING:
    from ltspec.report.collect import Results


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


LAYOUT = Layout("rp-init-trained", "R_p of the dense pairs by p", rp_init_trained, rp_vs_p)
