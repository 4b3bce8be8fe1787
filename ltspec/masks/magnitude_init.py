"""Magnitude pruning at initialisation: prune θ0 by magnitude, before any training.

The "magnitude at initialization" baseline of Frankle et al., ICLR 2021 ("Pruning Neural Networks at
Initialization: Why Are We Missing the Mark?"): if the winning property were only in the initial magnitudes, this
mask would do as well as a lottery ticket. Layerwise or global, like one-shot pruning of θT.
"""

from typing import Literal

from ltspec.masks.base import AtSparsities, Generator, magnitude_pruning_of, per_sparsity


class MagnitudeInit(AtSparsities):
    """Prune the initial weights θ0 by magnitude, to each target sparsity."""

    kind: Literal["magnitude_init"]


GENERATOR = Generator("magnitude_init", MagnitudeInit, frozenset({"init"}), per_sparsity, magnitude_pruning_of("init"),
                      description="magnitude pruning of θ0 (Frankle et al. 2021)")
