"""The compare stage: how alike masks are (`ltspec.similarity`), from stored masks and weights, with no training.

A stage compares a sequence of masks, each with the next: two masks of one trunk at one sparsity from two
generators, one generator's masks from two seeds, or the masks a generator passes through while it prunes
(the early-bird signal of You et al., ICLR 2020): for IMP, the masks at its last target drawn by magnitude from θT
and from every round's retrained ticket; for gradual pruning, the masks at its target it drew after every epoch.
Step i of the stage's history (and its final metrics `jaccard/i`, `hamming/i`, `jaccard_chance/i`) compares mask
i − 1 with mask i.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ltspec.kinds.base import (OMITTED_IF_NONE, LogEpochs, ModelConfig, Outcome, Runtime, Stage, StageFailed,
                               StageKind)
from ltspec.kinds.mask import MASK


@dataclass(frozen=True)
class Drawn:
    """How a mask is drawn from a network of `model`: magnitude pruning to `sparsity` with `scope` over the
    tensors of the kinds `prunable`, those matching `exclude` kept whole (the generator's own settings)."""

    sparsity: float
    scope: str
    prunable: tuple[str, ...]
    exclude: tuple[str, ...]
    model: ModelConfig


@dataclass(frozen=True)
class CompareConfig:
    """The masks to compare in order, each as (index of the parent it is read from, what of it): `mask` or `mask@e`
    (a mask stage's mask, or the snapshot of its run after epoch e), or a network (`trained` of a dense stage,
    `final` of a train stage) from which `drawn` says how to draw the mask."""

    masks: tuple[tuple[int, str], ...]
    drawn: Drawn | None = field(default=None, metadata=OMITTED_IF_NONE)


def run(stage: Stage, runtime: Runtime, log: LogEpochs) -> Outcome:
    from ltspec.similarity import overlap

    config: CompareConfig = stage.config
    masks = [_mask(runtime, stage, stage.parents[parent], what) for parent, what in config.masks]
    history = []
    for step, (earlier, later) in enumerate(zip(masks, masks[1:]), start=1):
        found = overlap(earlier, later)
        history.append((step, {"jaccard": found.jaccard, "hamming": found.hamming,
                               "jaccard_chance": found.chance_jaccard}))
    metrics = {f"{name}/{step}": value for step, values in history for name, value in values.items()}
    return Outcome(metrics, history)


def _mask(runtime: Runtime, stage: Stage, key: str, what: str):
    from ltspec.pruning import magnitude_mask, select_prunable

    if what == MASK or what.startswith(f"{MASK}@"):
        if not runtime.store.has(key, what):
            raise StageFailed(stage, f"mask stage {key[:10]} has no {what}: it was made for a spec that did not "
                              f"compare its run, so it kept no snapshots; delete its folder "
                              f"{runtime.store.stage_dir(key)} and run again to make it with them")
        return runtime.load_mask(key, what)
    drawn = stage.config.drawn
    weights = runtime.store.read_tensors(key, what)
    names = drawn.model.weight_names(list(drawn.prunable))
    _, excluded = select_prunable(names, drawn.exclude)
    return magnitude_mask({name: weights[name] for name in names}, drawn.sparsity, scope=drawn.scope,
                          exclude=excluded)


def describe(stage: Stage) -> str:
    labels = stage.labels
    compared = {"generators": f"{labels.get('a')} vs {labels.get('b')} at {labels.get('sparsity', 0):.1%}",
                "seeds": f"{labels.get('generator')} seed {labels.get('a')} vs {labels.get('b')}",
                "rounds": f"{labels.get('generator')} along its run"}
    return f"compare masks: {compared.get(labels.get('comparison'), 'masks')}"


KIND = StageKind("compare", CompareConfig, run, describe, place="mask")
