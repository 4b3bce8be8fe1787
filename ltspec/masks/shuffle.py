"""The layerwise-shuffle control of any generator's masks (Frankle et al., ICLR 2021, "Pruning Neural Networks at
Initialization: Why Are We Missing the Mark?"): each mask of the table named by `of`, its kept weights moved to
random positions within each layer, the count per layer unchanged and excluded layers dense.

If arms train as well on the shuffled masks as on the originals, what the method found is a per-layer sparsity,
not which weights to keep; the paper finds this of SNIP, GraSP and SynFlow, and not of magnitude pruning after
training. Always different from its source where a layer can change (`ltspec.pruning.shuffle_mask`). A shuffle
of an IMP table shuffles every round's mask, so each keeps its round.

Its seed is drawn from the trunk's seed and the source mask's key: seeded by the trunk's alone, the shuffle would
take the very positions the `random` generator draws from that seed (the same permutation of each layer), and a
comparison of the two would find them alike far beyond chance.
"""

import hashlib
from typing import Literal

from pydantic import Field

from ltspec.masks.base import Expansion, Generator, Made, MaskSettings, Sources


class Shuffle(MaskSettings):
    """Another table's masks, shuffled within each layer."""

    kind: Literal["shuffle"]
    of: str = Field(min_length=1, description="The `[masks.NAME]` table whose masks are shuffled (its NAME).")

    def target_sparsities(self) -> list[float]:
        return []


def expand(settings: Shuffle, plan: Expansion):
    for source in plan.masks_of(settings.of):
        config = {**plan.common(settings), "seed": shuffle_seed(plan.base["seed"], source.key)}
        yield plan.mask(config, sparsity=source.sparsity, parents=(source.key,), round=source.round)


def shuffle_seed(seed: int, source: str) -> int:
    return int.from_bytes(hashlib.sha256(f"shuffle:{seed}:{source}".encode()).digest()[:4], "big")


def make(config: dict, sources: Sources) -> Made:
    from ltspec.pruning import shuffle_mask

    return Made(shuffle_mask(sources.source_mask(), config["seed"]))


def of(settings: Shuffle) -> dict[str, str]:
    return {"of": settings.of}


GENERATOR = Generator("shuffle", Shuffle, frozenset({"source"}), expand, make, sources=of,
                      description="another table's masks shuffled within each layer (same per-layer counts)")
