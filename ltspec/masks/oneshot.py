"""One-shot magnitude pruning: prune the trained dense weights θT once, to each target sparsity."""

from typing import Literal

from ltspec.masks.base import AtSparsities, Generator, magnitude_pruning_of, per_sparsity


class OneShot(AtSparsities):
    """Prune the trained dense weights once, by magnitude, to each target sparsity."""

    kind: Literal["oneshot"]


GENERATOR = Generator("oneshot", OneShot, frozenset({"trained"}), per_sparsity, magnitude_pruning_of("trained"),
                      description="magnitude pruning of θT, once per target sparsity")
