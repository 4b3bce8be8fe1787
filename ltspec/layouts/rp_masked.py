"""R_p of the pairs under a mask by sparsity and p (the paper's Figs 5c/d)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ltspec.layouts.base import (RP_NOTE, SPARSITY_NOTE, Column, Layout, Row, Table, generators, has_mask_term,
                                  in_order, measure_stages, pair_label, rp_stat, sparsity_label)
from ltspec.layouts.drawing import rp_bars

if TYPE_CHECKING:
    from ltspec.report.collect import Results


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


LAYOUT = Layout("rp-masked", "R_p of the masked pairs by sparsity and p", rp_masked, rp_bars)
