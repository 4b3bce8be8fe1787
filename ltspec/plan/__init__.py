"""The plan: a DAG of stages compiled from a spec."""

from ltspec.plan.compile import ArmRun, Plan, compile_plan
from ltspec.plan.stages import Stage, stage_key

__all__ = ["ArmRun", "Plan", "Stage", "compile_plan", "stage_key"]
