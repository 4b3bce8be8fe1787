"""The plan: a DAG of stages compiled from a spec."""

from ltspec.kinds.base import Stage, stage_key
from ltspec.plan.compile import ArmRun, Plan, compile_plan

__all__ = ["ArmRun", "Plan", "Stage", "compile_plan", "stage_key"]
