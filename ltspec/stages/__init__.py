"""Stages at run time: what each kind computes, the training harness, and a stage's life from claim to record."""

from ltspec.stages.context import Context, Outcome, StageFailed
from ltspec.stages.lifecycle import execute, run_stage

__all__ = ["Context", "Outcome", "StageFailed", "execute", "run_stage"]
