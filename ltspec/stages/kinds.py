"""The stage kinds, one module each: what a stage of each kind computes from its parents' artifacts.

Adding a kind is one module with `KIND` and `run(stage, ctx, log) -> Outcome`, and one line here (and its name in
`ltspec.plan.stages.KINDS`, the vocabulary the compiler may use, which a test keeps equal to this registry).
"""

from ltspec.stages import dense, evaluate, mask, measure, train

REGISTRY = {module.KIND: module.run for module in (dense, mask, train, evaluate, measure)}
