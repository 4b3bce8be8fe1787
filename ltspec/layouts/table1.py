"""The paper's Table 1: R_p of the fine-tuned sparse network against init and trained, by model and dataset."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ltspec.layouts.base import (RP_NOTE, SPARSITY_NOTE, Column, Layout, Row, Table, has_mask_term, in_order,
                                  measure_stages, pair_label, rp_stat, short_names, sparsity_label)

if TYPE_CHECKING:
    from ltspec.report.collect import Results


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


LAYOUT = Layout("table1", "the paper's Table 1: R_p of the fine-tuned sparse network", table1)
