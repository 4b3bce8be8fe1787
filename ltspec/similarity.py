"""How alike two masks are: the Jaccard overlap of their kept sets, the Hamming distance, and what chance gives.

Used to ask whether two pruning methods find the same subnetwork, whether one method finds it again from another
seed, and when a mask settles while it is being made (You et al., ICLR 2020, "Drawing Early-Bird Tickets": the
distance between the masks drawn at consecutive epochs falls to about 0 early in training).

Only the tensors both masks prune count: an excluded tensor is whole in every mask and would only add agreement.
The chance reference is the overlap of two masks with the same per-tensor counts at independent uniformly random
positions: in a tensor of n weights keeping a and b, the shared count is hypergeometric with mean a·b/n.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ltspec.pruning import Mask


@dataclass(frozen=True)
class Overlap:
    """Counts over the weights two masks both prune: kept by both, kept by either, kept by one only; the expected
    count kept by both for random masks with the same per-tensor counts."""

    both: int
    either: int
    differ: int
    compared: int
    chance_both: float

    @property
    def jaccard(self) -> float:
        """|A ∩ B| / |A ∪ B|; 1 for two masks that keep nothing."""
        return self.both / self.either if self.either else 1.0

    @property
    def hamming(self) -> float:
        """The fraction of compared weights that one mask keeps and the other prunes."""
        return self.differ / self.compared if self.compared else 0.0

    @property
    def chance_jaccard(self) -> float:
        """The Jaccard overlap at the expected shared count of random masks with these counts (the ratio of
        expectations, within O(1/N) of the expected ratio)."""
        union = self.either + self.both - self.chance_both
        return self.chance_both / union if union else 1.0


def overlap(a: Mask, b: Mask) -> Overlap:
    """The overlap of two masks of one network over the tensors both prune."""
    if list(a) != list(b) or any(a[name].shape != b[name].shape for name in a):
        raise ValueError("the two masks are of different networks")
    names = [name for name in a if name not in a.excluded and name not in b.excluded]
    both = either = compared = 0
    chance = 0.0
    for name in names:
        left, right = a[name].cpu(), b[name].cpu()
        shared, union = int(torch.sum(left & right)), int(torch.sum(left | right))
        both, either, compared = both + shared, either + union, compared + left.numel()
        chance += int(left.sum()) * int(right.sum()) / left.numel()
    return Overlap(both, either, either - both, compared, chance)
