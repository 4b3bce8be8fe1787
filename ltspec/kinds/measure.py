"""The measure stage: R_p (the paper's Eq. 1) of every pair of weight points at every p; under the mask when both
sides are sparse, over all weights when both are dense."""

from __future__ import annotations

from dataclasses import dataclass

from ltspec import points
from ltspec.kinds.base import (LogEpochs, ModelConfig, Outcome, Runtime, Stage, StageFailed, StageKind,
                               where_on_mask)


@dataclass(frozen=True)
class MeasureConfig:
    """The pairs of weight points and the p at which to compare them; `arms`: the stage of each arm a pair names
    (its parents too), by arm name; `tensors`, `exclude`: which weights count."""

    pairs: tuple[tuple[str, str], ...]
    arms: dict[str, str]
    p: tuple[float, ...]
    tensors: tuple[str, ...]
    exclude: tuple[str, ...]
    model: ModelConfig


def run(stage: Stage, runtime: Runtime, log: LogEpochs) -> Outcome:
    from ltspec.correlation import magnitude_ranks, overlap_of_ranks
    from ltspec.pruning import select_prunable

    config: MeasureConfig = stage.config
    mask = runtime.load_mask(stage.parents[1]).to(runtime.device) if len(stage.parents) > 1 else None
    counted, _ = select_prunable(config.model.weight_names(list(config.tensors)), list(config.exclude))
    cache: dict = {}
    ranked: dict = {}

    def weights(term: str) -> dict:
        if term not in cache:
            cache[term] = _counted_weights(runtime, stage, term, counted, mask)
        return cache[term]

    def ranks(term: str, masked: bool) -> dict:
        """Each weight point sorted once, for every p and every pair it is in."""
        if (term, masked) not in ranked:
            ranked[term, masked] = magnitude_ranks(weights(term), mask if masked else None)
        return ranked[term, masked]

    metrics, layers = {}, {}
    for a, b in config.pairs:
        sparse = [points.parse(term).sparse for term in (a, b)]
        for p in config.p:
            if any(sparse) and not all(sparse):
                _check_p_fits_the_sparsest_layer(stage, mask, counted, p)
            terms = overlap_of_ranks(ranks(a, all(sparse)), ranks(b, all(sparse)), p)
            shared, slots = sum(s for s, _ in terms.values()), sum(k for _, k in terms.values())
            metrics[points.rp_metric(a, b, p)] = shared / slots
            layers[points.rp_metric(a, b, p)] = {name: s / k if k else None for name, (s, k) in terms.items()}
    return Outcome(metrics, artifacts={"rp_layers": layers})


def _counted_weights(runtime: Runtime, stage: Stage, term: str, counted: list[str], mask) -> dict:
    """The counted tensors of a weight point, on the device in float32."""
    import torch

    state = runtime.point_weights(stage.parents[0], term, stage.config.arms, mask)
    return {name: state[name].to(runtime.device, torch.float32) for name in counted}


def _check_p_fits_the_sparsest_layer(stage: Stage, mask, counted: list[str], p: float) -> None:
    """A sparse network against a dense one: its sparsest layer must still have p of its weights."""
    from ltspec.correlation import check_sparse_dense_p

    sparsest_layer = max((1 - float(mask[n].float().mean()) for n in counted if n in mask), default=0.0)
    try:
        check_sparse_dense_p(sparsest_layer, p)
    except ValueError as error:
        raise StageFailed(stage, str(error)) from None


def describe(stage: Stage) -> str:
    return f"measure R_p on {where_on_mask(stage)}" if stage.labels.get("generator") else "measure R_p (dense)"


KIND = StageKind("measure", MeasureConfig, run, describe, place="mask")
