"""Magnitude pruning at initialisation: prune θ0 by magnitude, before any training.

The "magnitude at initialization" baseline of Frankle et al., ICLR 2021 ("Pruning Neural Networks at
Initialization: Why Are We Missing the Mark?"): if the winning property were only in the initial magnitudes, this
mask would do as well as a lottery ticket. Layerwise or global, like one-shot pruning of θT.
"""

from typing import Literal

from ltspec.masks.base import AtSparsities, Generator, Made, Sources, per_sparsity


class MagnitudeInit(AtSparsities):
    """Prune the initial weights θ0 by magnitude, to each target sparsity."""

    kind: Literal["magnitude_init"]


def make(config: dict, sources: Sources) -> Made:
    from ltspec.pruning import magnitude_mask

    weights, excluded = sources.prunable(sources.network("init"))
    return Made(magnitude_mask(weights, config["sparsity"], scope=config["scope"], exclude=excluded))


GENERATOR = Generator("magnitude_init", MagnitudeInit, frozenset({"init"}), per_sparsity, make,
                      description="magnitude pruning of θ0 (Frankle et al. 2021)")
