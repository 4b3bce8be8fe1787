"""Random masks: a baseline at random positions, with per-layer counts of one of two distributions.

- `magnitude` (the default): the per-layer counts of a magnitude mask of θT of the same setting (layerwise: the
  same sparsity in every layer);
- `erk`: the Erdős–Rényi-Kernel distribution of Evci et al. (ICML 2020, "Rigging the Lottery"), as JaxPruner and
  RigL offer it: sparser where a layer has more weights per input and output unit (`ltspec.pruning.erk_counts`),
  the total kept exactly that of the target sparsity.

Drawn per layer from the trunk's seed, so the same spec and seed give the same mask on every device.
"""

from typing import Literal

from pydantic import Field

from ltspec.masks.base import AtSparsities, Expansion, Generator, Made, Sources, per_sparsity


class RandomMask(AtSparsities):
    """A baseline: random positions with the per-layer counts of a magnitude mask of the same setting, or ERK's."""

    kind: Literal["random"]
    distribution: Literal["magnitude", "erk"] = Field(
        "magnitude", description="Kept weights per layer: `magnitude`, those of a magnitude mask of the same "
        "setting; `erk`, the Erdős–Rényi-Kernel distribution (Evci et al. 2020).")


def expand(settings: RandomMask, plan: Expansion):
    erk = {"distribution": "erk"} if settings.distribution == "erk" else {}  # the default stays out of the keys
    return per_sparsity(settings, plan, {"seed": plan.base["seed"], **erk})


def make(config: dict, sources: Sources) -> Made:
    from ltspec.pruning import Mask, dense_mask, erk_counts, magnitude_mask, random_mask

    weights, excluded = sources.prunable(sources.network("trained", mode="eval"))
    if config.get("distribution") == "erk":
        like = Mask(dense_mask(weights).tensors, frozenset(excluded))
        shapes = {name: tuple(weight.shape) for name, weight in weights.items()}
        return Made(random_mask(like, config["seed"], erk_counts(shapes, config["sparsity"], excluded)))
    like = magnitude_mask(weights, config["sparsity"], scope=config["scope"], exclude=excluded)
    return Made(random_mask(like, config["seed"]))


def check(settings: RandomMask) -> list[tuple[tuple, str, str]]:
    if settings.scope == "global":
        return [(("scope",), "random masks are drawn per layer",
                 "use scope = \"layerwise\"; per-layer counts come from the sparsity")]
    return []


GENERATOR = Generator("random", RandomMask, frozenset({"trained"}), expand, make, check=check,
                      description="random positions with the per-layer counts of a magnitude mask")
