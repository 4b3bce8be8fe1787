"""Stage kinds, one module each, found by the kind a plan's stage carries.

Adding a stage kind is one new module (its config record, `run`, `describe`, where the plan tree shows it and what
its MLflow run logs: see `ltspec.kinds.base`) and one line in `BUILT_IN` below; the compiler then emits stages of
it. A kind's name is written only in its module: everything else asks the record (`stage.kind == dense.KIND`).
"""

from ltspec.kinds import compare, dense, evaluate, interpolate, mask, measure, train
from ltspec.kinds.base import Outcome, Runtime, Stage, StageFailed, StageKind

BUILT_IN = (
    dense.KIND,
    mask.KIND,
    train.KIND,
    evaluate.KIND,
    measure.KIND,
    interpolate.KIND,
    compare.KIND,
)

REGISTRY: dict[str, StageKind] = {kind.name: kind for kind in BUILT_IN}

__all__ = ["BUILT_IN", "Outcome", "REGISTRY", "Runtime", "Stage", "StageFailed", "StageKind"]
