"""SNIP (Lee et al., ICLR 2019): prune at initialisation by connection sensitivity |∂L/∂w ⊙ w|.

The score of a weight is the magnitude of its gradient times its value at θ0, the gradient of the cross entropy
summed over the first `batches` training batches of the trunk's first epoch (so the mask is a pure function of the
spec and seed). The top scores are kept: globally by default, as Lee et al. do, or per layer.

The network scores in eval mode by default, as both authors' codes do (SNIP's feeds `is_train: False`; SynFlow's
`prune_loop`, which also runs SNIP, calls `model.eval()` unless asked otherwise): batch norm normalises with its
running statistics, at θ0 the identity. `mode = "train"` normalises with the scoring batch's own statistics
instead; on a net with batch norm the two masks differ in most of their kept weights.
"""

from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import Field

from ltspec.masks.base import AtSparsities, Generator, Made, Sources, per_sparsity
from ltspec.strict import NetworkMode, PositiveInt, Scope


class Snip(AtSparsities):
    """Prune θ0 by connection sensitivity |∂L/∂w ⊙ w| on a few training batches (Lee et al. 2019)."""

    kind: Literal["snip"]
    scope: Scope = Field("global", description="`global` (SNIP's own choice): one threshold over all prunable "
                         "tensors; `layerwise`: the same sparsity in each.")
    batches: PositiveInt = Field(1, description="Training batches whose loss gradients are summed for the scores.")
    mode: NetworkMode = Field("eval", description="The network's mode while scoring: `eval` (the SNIP and SynFlow "
                              "authors' code: batch norm on its running statistics, dropout off) or `train` (batch "
                              "norm on the scoring batch's statistics).")


def expand(settings: Snip, plan):
    return per_sparsity(settings, plan, {"batches": settings.batches, "mode": settings.mode})


def snip_scores(model, weights: Mapping, batches: Iterable) -> dict:
    """|∂L/∂w ⊙ w| for each of `weights` (parameters of `model`), L the cross entropy summed over `batches`."""
    import torch
    import torch.nn.functional as F

    model.zero_grad(set_to_none=True)
    for x, y in batches:
        F.cross_entropy(model(x), y).backward()
    with torch.no_grad():
        return {name: (weight.grad * weight).abs() for name, weight in weights.items()}


def make(config: dict, sources: Sources) -> Made:
    from itertools import islice

    from ltspec.pruning import magnitude_mask

    network = sources.network("init", mode=config["mode"])
    weights, excluded = sources.prunable(network)
    scores = snip_scores(network, weights, islice(sources.batches(), config["batches"]))
    return Made(magnitude_mask(scores, config["sparsity"], scope=config["scope"], exclude=excluded))


GENERATOR = Generator("snip", Snip, frozenset({"init", "data"}), expand, make,
                      description="connection sensitivity |∂L/∂w ⊙ w| at θ0 (Lee et al. 2019)")
