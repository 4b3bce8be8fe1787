"""Iterative magnitude pruning (Frankle & Carbin 2019): each round prunes `rate` of the weights the previous round's
ticket kept, then retrains from the reset point.

Round r's mask is made from round r-1's retrained ticket (θT for the first round) and nested in round r-1's mask,
so after r rounds the sparsity is 1 - (1 - rate)^r. The retraining from `reset` on round r's mask *is* the lottery
(or rewind) arm on that mask: the compiler adds it once, and an arm with the same start finds it by key.
"""

import math
from typing import Literal

from pydantic import Field

from ltspec.masks.base import Expansion, Generator, Made, MaskSettings, Sources
from ltspec.strict import Fraction, PositiveInt, WeightPoint


class Imp(MaskSettings):
    """Iterative magnitude pruning: each round prunes `rate` of the remaining weights of the last ticket."""

    kind: Literal["imp"]
    rate: Fraction = Field(0.2, description="Fraction of the remaining weights pruned each round.")
    rounds: PositiveInt | None = Field(None, description="Number of rounds; or give `target_sparsity`.")
    target_sparsity: Fraction | None = Field(
        None, description="Run the fewest rounds whose sparsity 1-(1-rate)^r reaches this.")
    reset: WeightPoint = Field(
        "init", pattern=r"^(init|rewind@[0-9]+)$",
        description="Where each round restarts: `init` (the lottery ticket) or `rewind@k`.")

    def round_count(self) -> int:
        """Rounds to run: as given, or the fewest whose sparsity reaches `target_sparsity`."""
        if self.rounds is not None:
            return self.rounds
        target = self.target_sparsity if self.target_sparsity is not None else 0.0
        return max(1, math.ceil(math.log(1.0 - target) / math.log(1.0 - self.rate) - 1e-9))

    def target_sparsities(self) -> list[float]:
        return [1.0 - (1.0 - self.rate) ** r for r in range(1, self.round_count() + 1)]


def expand(settings: Imp, plan: Expansion):
    """Round r: a mask from round r-1's ticket (and nested in its mask), then the retraining that is the next ticket."""
    ticket, previous = None, None
    for round_number, sparsity in enumerate(settings.target_sparsities(), start=1):
        config = {**plan.common(settings), "rate": settings.rate, "round": round_number}
        parents = () if ticket is None else (ticket, previous)
        mask = plan.mask(config, sparsity=sparsity, parents=parents, round=round_number, result=False)
        ticket, previous = plan.retrain(mask, settings.reset), mask
        yield mask


def make(config: dict, sources: Sources) -> Made:
    from ltspec.pruning import dense_mask, imp_round, Mask

    weights, excluded = sources.prunable(sources.network("ticket", mode="eval"))
    previous = sources.previous_mask() or Mask(dense_mask(weights).tensors, frozenset(excluded))
    return Made(imp_round(weights, config["rate"], previous, scope=config["scope"], exclude=excluded))


def start_points(settings: Imp) -> dict[str, str]:
    return {"reset": settings.reset}


def check(settings: Imp) -> list[tuple[tuple, str, str]]:
    if (settings.rounds is None) == (settings.target_sparsity is None):
        return [((), "give exactly one of `rounds` and `target_sparsity`",
                 "e.g. rounds = 8 prunes 1 - 0.8^8 = 83% at rate 0.2")]
    return []


GENERATOR = Generator("imp", Imp, frozenset({"ticket"}), expand, make, start_points=start_points, check=check,
                      trajectory="tickets",
                      description="iterative magnitude pruning, each round retrained from the reset point")
