"""The measure stage: R_p (the paper's Eq. 1) of every pair of weight points at every p; under the mask when both
sides are sparse, over all weights when both are dense."""

from __future__ import annotations

import torch
from torch import Tensor

from ltspec import points
from ltspec.correlation import Ranks, check_sparse_dense_p, magnitude_ranks, overlap_of_ranks
from ltspec.plan import Stage
from ltspec.pruning import Mask, select_prunable
from ltspec.stages.context import Context, Outcome, StageFailed, weight_names
from ltspec.stages.harness import LogEpochs
from ltspec.stages.weights import FINAL, dense_point, load_mask
from ltspec.tracking import rp_metric

KIND = "measure"


def run(stage: Stage, ctx: Context, log: LogEpochs) -> Outcome:
    config = stage.config
    mask = load_mask(ctx, stage.parents[1]).to(ctx.device) if len(stage.parents) > 1 else None
    counted, _ = select_prunable(weight_names(config["model"], config["tensors"]), config["exclude"])
    cache: dict[str, dict[str, Tensor]] = {}
    ranked: dict[tuple[str, bool], dict[str, Ranks]] = {}

    def weights(term: str) -> dict[str, Tensor]:
        if term not in cache:
            cache[term] = _counted_weights(ctx, stage, points.parse(term), counted, mask)
        return cache[term]

    def ranks(term: str, masked: bool) -> dict[str, Ranks]:
        """Each weight point sorted once, for every p and every pair it is in."""
        if (term, masked) not in ranked:
            ranked[term, masked] = magnitude_ranks(weights(term), mask if masked else None)
        return ranked[term, masked]

    metrics, layers = {}, {}
    for a, b in config["pairs"]:
        sparse = [points.parse(term).sparse for term in (a, b)]
        for p in config["p"]:
            if any(sparse) and not all(sparse):
                _check_p_fits_the_sparsest_layer(stage, mask, counted, p)
            terms = overlap_of_ranks(ranks(a, all(sparse)), ranks(b, all(sparse)), p)
            shared, slots = sum(s for s, _ in terms.values()), sum(k for _, k in terms.values())
            metrics[rp_metric(a, b, p)] = shared / slots
            layers[rp_metric(a, b, p)] = {name: s / k if k else None for name, (s, k) in terms.items()}
    return Outcome(metrics, artifacts={"rp_layers": layers})


def _counted_weights(ctx: Context, stage: Stage, point: points.Point, counted: list[str],
                     mask: Mask | None) -> dict[str, Tensor]:
    """The counted tensors of a weight point: a trunk's dense point (under the mask for `X*mask`) or an arm's result."""
    if point.dense:
        state = dense_point(ctx, stage.parents[0], point.base)
    else:
        state = ctx.store.read_tensors(stage.config["arms"][point.name], FINAL)
    chosen = {name: state[name].to(ctx.device, torch.float32) for name in counted}
    if point.masked:
        chosen = {name: w * mask[name] if name in mask else w for name, w in chosen.items()}
    return chosen


def _check_p_fits_the_sparsest_layer(stage: Stage, mask: Mask, counted: list[str], p: float) -> None:
    """A sparse network against a dense one: its sparsest layer must still have p of its weights."""
    sparsest_layer = max((1 - float(mask[n].float().mean()) for n in counted if n in mask), default=0.0)
    try:
        check_sparse_dense_p(sparsest_layer, p)
    except ValueError as error:
        raise StageFailed(stage, str(error)) from None
