"""SynFlow (Tanaka et al., NeurIPS 2020): data-free, iterative pruning by synaptic flow.

With every parameter replaced by its absolute value, R = Σ f(1) is the sum of the network's output on an all-ones
input; a weight's score is |∂R/∂θ ⊙ θ|. Pruning runs in `iterations` rounds on an exponential schedule: round k
prunes to sparsity 1 − (1 − s)^(k/n), each round rescoring the network with the weights already pruned set to
zero, each mask nested in the last. The last round prunes to s itself, as the authors' density schedule does:
1 − (1 − s)^(n/n) is not s in floating point (0.30000000000000004 for 0.3), and where s·N is a half-integer that
would put the count one weight off the rule every mask keeps, N − round(s·N). Batch norm is in eval mode (its running
statistics, as the authors do), and the whole computation is in float64, where R of a deep net would overflow
float32.
"""

from typing import Literal

from pydantic import Field

from ltspec.masks.base import AtSparsities, Generator, Made, Sources, per_sparsity
from ltspec.strict import PositiveInt, Scope


class Synflow(AtSparsities):
    """Data-free iterative pruning of θ0 by synaptic flow |∂R/∂θ ⊙ θ| (Tanaka et al. 2020)."""

    kind: Literal["synflow"]
    scope: Scope = Field("global", description="`global` (SynFlow's own choice): one threshold over all prunable "
                         "tensors; `layerwise`: the same sparsity in each.")
    iterations: PositiveInt = Field(100, description="Pruning rounds on the exponential sparsity schedule.")


def expand(settings: Synflow, plan):
    return per_sparsity(settings, plan, {"iterations": settings.iterations})


def synflow_mask(model, names: list[str], input_shape: tuple[int, ...], sparsity: float, iterations: int, *,
                 scope: str = "global", exclude=()):
    """The SynFlow mask of `model`'s tensors `names` (its weights are not changed: it works on a copy)."""
    import copy

    import torch

    from ltspec.pruning import magnitude_mask

    flow = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for tensor in flow.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    params = dict(flow.named_parameters())
    weights = {name: params[name] for name in names}
    original = {name: weight.detach().clone() for name, weight in weights.items()}
    ones = torch.ones((1, *input_shape), dtype=torch.float64, device=next(flow.parameters()).device)
    mask = None
    for round_number in range(1, iterations + 1):
        flow.zero_grad(set_to_none=True)
        flow(ones).sum().backward()
        with torch.no_grad():
            scores = {name: (weight.grad * weight).abs() for name, weight in weights.items()}
            target = sparsity if round_number == iterations else 1.0 - (1.0 - sparsity) ** (round_number / iterations)
            mask = magnitude_mask(scores, target, scope=scope, previous=mask, exclude=exclude)
            for name, weight in weights.items():
                weight.copy_(original[name] * mask[name])
    return mask


def make(config: dict, sources: Sources) -> Made:
    network = sources.network("init", mode="eval")
    weights, excluded = sources.prunable(network)
    mask = synflow_mask(network, list(weights), sources.input_shape(), config["sparsity"], config["iterations"],
                        scope=config["scope"], exclude=excluded)
    return Made(mask)


GENERATOR = Generator("synflow", Synflow, frozenset({"init"}), expand, make,
                      description="data-free iterative synaptic flow |∂R/∂θ ⊙ θ| (Tanaka et al. 2020)",
                      version=2)  # 2: the last round prunes to exactly s (it could prune one weight too many)
