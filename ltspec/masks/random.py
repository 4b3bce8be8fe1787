"""Random masks: a baseline with the per-layer counts of a magnitude mask of the same setting, at random positions.

Drawn per layer from the trunk's seed, so the same spec and seed give the same mask on every device.
"""

from typing import Literal

from ltspec.masks.base import AtSparsities, Expansion, Generator, Made, Sources, per_sparsity


class RandomMask(AtSparsities):
    """A baseline: random positions with the per-layer counts of a magnitude mask of the same setting."""

    kind: Literal["random"]


def expand(settings: RandomMask, plan: Expansion):
    return per_sparsity(settings, plan, {"seed": plan.base["seed"]})


def make(config: dict, sources: Sources) -> Made:
    from ltspec.pruning import magnitude_mask, random_mask

    weights, excluded = sources.prunable(sources.network("trained", mode="eval"))
    like = magnitude_mask(weights, config["sparsity"], scope=config["scope"], exclude=excluded)
    return Made(random_mask(like, config["seed"]))


def check(settings: RandomMask) -> list[tuple[tuple, str, str]]:
    if settings.scope == "global":
        return [(("scope",), "random masks are drawn per layer",
                 "use scope = \"layerwise\"; per-layer counts come from the sparsity")]
    return []


GENERATOR = Generator("random", RandomMask, frozenset({"trained"}), expand, make, check=check,
                      description="random positions with the per-layer counts of a magnitude mask")
