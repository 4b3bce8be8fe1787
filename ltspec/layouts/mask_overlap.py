"""Mask similarity (`[mask_overlap]`): the Jaccard overlap of kept sets across mask generators and across seeds, and
the Hamming distance between the masks a generator passes through while it prunes (the early-bird signal of You
et al., ICLR 2020).

- `mask-overlap-generators`: per sparsity, an annotated matrix of the mean Jaccard overlap of every two tables'
  masks over seeds; `mask-overlap-generators-chance` the same for random masks with the same per-layer counts
  (a table without a figure);
- `mask-overlap-seeds`: per table and sparsity, the Jaccard overlap of two seeds' masks (over every pair of seeds),
  beside its chance value;
- `mask-overlap-rounds-<table>`: the Hamming distance (% of the pruned tensors' weights) between each mask of the
  run and the one before, by IMP round or gradual epoch, one line per target sparsity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ltspec.layouts.base import SPARSITY_NOTE, Column, Layout, Row, Table, generators, in_order, sparsity_label
from ltspec.layouts.drawing import lines_by, matrices

if TYPE_CHECKING:
    from ltspec.kinds.base import Stage
    from ltspec.report.collect import Point, Results

JACCARD_NOTE = ("Jaccard overlap |A ∩ B| / |A ∪ B| of the kept weights of the tensors both masks prune; chance: "
                "the value for masks with the same per-layer counts at random positions.")
HAMMING_NOTE = ("Hamming distance: the % of the pruned tensors' weights kept by one mask and not the other. IMP: "
                "between the masks at its last target drawn from θT (round 0) and each retrained ticket; gradual: "
                "between the masks at its target drawn after each epoch (epoch 0: θT).")


def comparisons(point: Point, comparison: str) -> list[Stage]:
    return [stage for stage in point.plan.comparisons if stage.labels.get("comparison") == comparison]


def across_generators(results: Results) -> list[Table]:
    found = [(point, stage) for point in results.points for stage in comparisons(point, "generators")]
    if not found:
        return []
    names = [name for name in generators(results) if any(name in (stage.labels["a"], stage.labels["b"])
                                                         for _, stage in found)]
    columns = tuple(Column(point.label, name) for point in results.points for name in names)
    tables = []
    for suffix, metric, title in (("", "jaccard/1", "Jaccard overlap of the masks of two generators"),
                                  ("-chance", "jaccard_chance/1", "Jaccard overlap by chance (random masks with the "
                                                                  "same per-layer counts)")):
        rows = []
        for target in sorted({stage.labels["sparsity"] for _, stage in found}):
            there = [(point, stage) for point, stage in found if stage.labels["sparsity"] == target]
            label = sparsity_label(results, (parent for _, stage in there for parent in stage.parents), target)[0]
            for row_name in names:
                def keys(point, column):
                    return [stage.key for where, stage in there if where is point
                            and {stage.labels["a"], stage.labels["b"]} == {row_name, column}]
                cells = tuple(results.stat(keys(point, name), metric) for point in results.points for name in names)
                if any(cell.expected for cell in cells):
                    rows.append(Row((label, row_name), cells, target))
        tables.append(Table("mask-overlap", f"mask-overlap-generators{suffix}", title, ("sparsity", "generator"),
                            columns, tuple(rows), percent=False, notes=(JACCARD_NOTE, SPARSITY_NOTE)))
    return tables


def across_seeds(results: Results) -> list[Table]:
    found = [(point, stage) for point in results.points for stage in comparisons(point, "seeds")]
    if not found:
        return []
    names = in_order(stage.labels["generator"] for _, stage in found)
    series = [(name, metric) for name in names for metric in ("jaccard/1", "jaccard_chance/1")]
    columns = tuple(Column(point.label, name if metric == "jaccard/1" else f"{name} (chance)")
                    for point in results.points for name, metric in series)
    rows = []
    for target in sorted({stage.labels["sparsity"] for _, stage in found}):
        there = [(point, stage) for point, stage in found if stage.labels["sparsity"] == target]
        label, x = sparsity_label(results, (parent for _, stage in there for parent in stage.parents), target)
        cells = tuple(results.stat([stage.key for where, stage in there if where is point
                                    and stage.labels["generator"] == name], metric)
                      for point in results.points for name, metric in series)
        rows.append(Row((label,), cells, x))
    return [Table("mask-overlap", "mask-overlap-seeds", "Jaccard overlap of one generator's masks from two seeds",
                  ("sparsity",), columns, tuple(rows), percent=False,
                  notes=(JACCARD_NOTE, "Each cell is over every pair of seeds.", SPARSITY_NOTE))]


def along_the_run(results: Results) -> list[Table]:
    tables = []
    for name in generators(results):
        found = [(point, stage) for point in results.points for stage in comparisons(point, "rounds")
                 if stage.labels["generator"] == name]
        if not found:
            continue
        step = "epoch" if found[0][1].config.masks[0][1].startswith("mask@") else "round"
        targets = sorted({stage.labels["sparsity"] for _, stage in found})
        columns = tuple(Column(point.label, f"{target:.1%}") for point in results.points for target in targets)
        rows = []
        for number in range(1, max(len(stage.config.masks) for _, stage in found)):
            cells = tuple(results.stat([stage.key for where, stage in found if where is point
                                        and stage.labels["sparsity"] == target], f"hamming/{number}")
                          for point in results.points for target in targets)
            rows.append(Row((f"{number - 1} → {number}",), cells, number))
        tables.append(Table("mask-overlap", f"mask-overlap-rounds-{name}",
                            f"Hamming distance between consecutive masks of {name} at its target (%)", (step,),
                            columns, tuple(rows), percent=True, notes=(HAMMING_NOTE,)))
    return tables


def mask_overlap(results: Results) -> list[Table]:
    return [*across_generators(results), *across_seeds(results), *along_the_run(results)]


def figure(table: Table):
    if table.name == "mask-overlap-generators":
        return matrices(table)
    if table.name == "mask-overlap-seeds":
        return lines_by("sparsity (%)", "Jaccard overlap between seeds")(table)
    if table.name.startswith("mask-overlap-rounds-"):
        return lines_by(table.index[0], "Hamming distance to the previous mask (%)", x_scale=1.0)(table)
    return None


LAYOUT = Layout("mask-overlap", "mask similarity across generators, seeds and a generator's run", mask_overlap,
                figure)
