"""Stages at run time: what every stage kind runs on (its context, the training harness, weights and masks in the
store, its MLflow run) and a stage's life from claim to record. What each kind computes is `ltspec.kinds`."""

from ltspec.kinds.base import Outcome, StageFailed
from ltspec.stages.context import Context
from ltspec.stages.lifecycle import execute, run_stage

__all__ = ["Context", "Outcome", "StageFailed", "execute", "run_stage"]
