"""Report layouts, one module each, found by the names a spec's `[report] layouts` lists.

Adding a layout is one new module (its tables from the results and how they are drawn: see `ltspec.layouts.base`)
and one line in `BUILT_IN` below; the spec's vocabulary and the JSON schema are built from `REGISTRY`, in this
order, which is also the default order of a report.
"""

from ltspec.layouts import (ablations, arms, dense, instability, lmc, lottery_vs_reinit, mask_overlap, rewind,
                            rp_init_trained, rp_masked, table1)
from ltspec.layouts.base import Layout, Table

BUILT_IN = (
    dense.LAYOUT,
    lottery_vs_reinit.LAYOUT,
    rp_init_trained.LAYOUT,
    rp_masked.LAYOUT,
    arms.LAYOUT,
    table1.LAYOUT,
    rewind.LAYOUT,
    lmc.LAYOUT,
    instability.LAYOUT,
    mask_overlap.LAYOUT,
    ablations.LAYOUT,
)

REGISTRY: dict[str, Layout] = {layout.name: layout for layout in BUILT_IN}


def build_tables(results, names) -> list[Table]:
    """The tables of the named layouts, in the order given, skipping layouts the plan has no stages for."""
    return [table for name in names for table in REGISTRY[name].tables(results)]


__all__ = ["BUILT_IN", "Layout", "REGISTRY", "Table", "build_tables"]
