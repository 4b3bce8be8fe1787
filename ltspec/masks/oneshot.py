"""One-shot magnitude pruning: prune the trained dense weights θT once, to each target sparsity."""

from typing import Literal

from ltspec.masks.base import AtSparsities, Generator, Made, Sources, per_sparsity


class OneShot(AtSparsities):
    """Prune the trained dense weights once, by magnitude, to each target sparsity."""

    kind: Literal["oneshot"]


def make(config: dict, sources: Sources) -> Made:
    from ltspec.pruning import magnitude_mask

    weights, excluded = sources.prunable(sources.network("trained"))
    return Made(magnitude_mask(weights, config["sparsity"], scope=config["scope"], exclude=excluded))


GENERATOR = Generator("oneshot", OneShot, frozenset({"trained"}), per_sparsity, make,
                      description="magnitude pruning of θT, once per target sparsity")
