"""Keep-masks, the magnitude pruning that makes them, and the hook that trains on one.

A mask holds one boolean tensor per weight tensor, True where the weight is kept. Tensors named as excluded
(the paper never prunes the first conv) stay all-True and are left out of every sparsity figure, so that
"80% sparse" means 80% of the weights the experiment actually prunes.

Counting rule, used everywhere below: pruning a fraction f of a pool of n weights removes round(f * n) of them,
with Python's round (half to even), as torch.nn.utils.prune does. Ties in magnitude are broken by position:
among equal |w| the lower flat index is kept (for a global pool, the lower position in the concatenation of the
tensors in dict order). Both rules make a mask a pure function of the weights, on any device.
"""

import math
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from ltspec.hooks import Hook

Scope = Literal["layerwise", "global"]


@dataclass(frozen=True, eq=False)
class Mask(Mapping[str, Tensor]):
    """Boolean keep-masks by parameter name, in the model's parameter order. True = kept."""

    tensors: dict[str, Tensor]
    excluded: frozenset[str] = frozenset()
    # Float copies of the masks in the dtype and device of the parameters they were applied to, built on the
    # first apply_ so that enforcing the mask after every optimizer step is one fused multiply, nothing else.
    _multipliers: dict[tuple, list[Tensor]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        for name, kept in self.tensors.items():
            if kept.dtype != torch.bool:
                raise ValueError(f"mask for {name!r} must be a bool tensor, got {kept.dtype}")
        unknown = self.excluded - self.tensors.keys()
        if unknown:
            raise ValueError(f"excluded names not in the mask: {sorted(unknown)}")
        pruned = [name for name in self.excluded if not bool(self.tensors[name].all())]
        if pruned:
            raise ValueError(f"excluded tensors must be fully kept, but these are pruned: {sorted(pruned)}")

    def __getitem__(self, name: str) -> Tensor:
        return self.tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Mask):
            return NotImplemented
        return (
            list(self.tensors) == list(other.tensors)
            and self.excluded == other.excluded
            and all(torch.equal(self.tensors[name], other.tensors[name]) for name in self.tensors)
        )

    def __repr__(self) -> str:
        return f"Mask(tensors={len(self)}, density={self.density():.4f}, excluded={sorted(self.excluded)})"

    @property
    def pruned_names(self) -> list[str]:
        """The tensors this mask prunes (every tensor that is not excluded), in order."""
        return [name for name in self.tensors if name not in self.excluded]

    def kept(self) -> dict[str, int]:
        """Number of kept weights in every tensor, excluded ones included."""
        return {name: int(kept.sum()) for name, kept in self.tensors.items()}

    def layer_density(self) -> dict[str, float]:
        """Fraction kept in every tensor, excluded ones included (they read 1.0)."""
        return {name: count / self.tensors[name].numel() for name, count in self.kept().items()}

    def density(self) -> float:
        """Fraction kept over the pruned tensors only; 1.0 when nothing is pruned."""
        names = self.pruned_names
        total = sum(self.tensors[name].numel() for name in names)
        if total == 0:
            return 1.0
        return sum(int(self.tensors[name].sum()) for name in names) / total

    def sparsity(self) -> float:
        return 1.0 - self.density()

    def save(self, path: str | Path) -> None:
        """Writes CPU tensors, so that a mask made on a GPU loads anywhere."""
        torch.save({"tensors": {name: kept.cpu() for name, kept in self.tensors.items()},
                    "excluded": sorted(self.excluded)}, path)

    @staticmethod
    def load(path: str | Path) -> "Mask":
        state = torch.load(path, weights_only=True)
        return Mask(state["tensors"], frozenset(state["excluded"]))

    def to(self, device: torch.device | str) -> "Mask":
        return Mask({name: kept.to(device) for name, kept in self.tensors.items()}, self.excluded)

    def apply_(self, params: Mapping[str, Tensor]) -> None:
        """Zero the pruned weights of `params` in place: one fused multiply over all pruned tensors.

        Safe to call after every optimizer step: no host sync, and the float masks are built once per
        (dtype, device) layout of the parameters.
        """
        names = self.pruned_names
        if not names:
            return
        targets = [params[name] for name in names]
        layout = tuple((target.dtype, target.device) for target in targets)
        multipliers = self._multipliers.get(layout)
        if multipliers is None:
            multipliers = [self.tensors[name].to(target.device, target.dtype)
                           for name, target in zip(names, targets)]
            self._multipliers[layout] = multipliers
        with torch.no_grad():
            torch._foreach_mul_(targets, multipliers)


class EnforceMask(Hook):
    """Training on a mask: pruned weights are zeroed now, and again after every optimizer step, so that they are
    exactly zero at every forward pass whatever the optimizer, momentum or weight decay."""

    name = "mask"

    def __init__(self, mask: Mask, model: nn.Module):
        params = dict(model.named_parameters())
        self.mask = mask.to(params[next(iter(mask))].device)
        self.params = {name: params[name] for name in mask}
        self.mask.apply_(self.params)

    def after_step(self) -> None:
        self.mask.apply_(self.params)


def dense_mask(weights: Mapping[str, Tensor]) -> Mask:
    """Keeps everything: the starting point of iterative pruning."""
    return Mask({name: torch.ones_like(weight, dtype=torch.bool) for name, weight in weights.items()})


def select_prunable(names: Iterable[str], exclude_patterns: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split parameter names into (pruned, excluded) by fnmatch patterns, keeping their order.

    A pattern matches either the full parameter name ("conv1.weight") or its module name ("conv1"), so specs
    can name layers the way the model prints them.
    """
    patterns = list(exclude_patterns)
    pruned, excluded = [], []
    for name in names:
        module = name.rpartition(".")[0]
        hit = any(fnmatchcase(name, pattern) or fnmatchcase(module, pattern) for pattern in patterns)
        (excluded if hit else pruned).append(name)
    return pruned, excluded


def magnitude_mask(
    weights: Mapping[str, Tensor],
    sparsity: float,
    *,
    scope: Scope = "layerwise",
    previous: Mask | None = None,
    exclude: Collection[str] = (),
) -> Mask:
    """Keep the largest-magnitude weights so that a fraction `sparsity` of the prunable weights is pruned.

    Layerwise, each prunable tensor of n weights keeps n - round(sparsity * n); global, the N prunable weights
    together keep N - round(sparsity * N) under one threshold. With `previous`, only the weights it kept are
    candidates (the new mask is nested in it) and `sparsity` is still the total target, not an increment.
    """
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    return _prune_by_magnitude(weights, lambda total, _: total - round(sparsity * total),
                               scope, previous, exclude)


def imp_round(
    weights: Mapping[str, Tensor],
    rate: float,
    previous: Mask,
    *,
    scope: Scope = "layerwise",
    exclude: Collection[str] = (),
) -> Mask:
    """One round of iterative magnitude pruning: prune a fraction `rate` of the weights `previous` kept.

    A pool (a tensor, or all prunable tensors for global scope) that kept k weights keeps k - round(rate * k),
    so after r rounds from dense it keeps (1 - rate)^r * n up to one weight of rounding per round.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    return _prune_by_magnitude(weights, lambda _, candidates: candidates - round(rate * candidates),
                               scope, previous, exclude)


def random_mask(like: Mask, seed: int, counts: Mapping[str, int] | None = None) -> Mask:
    """A mask of `like`'s tensors keeping exactly `counts` weights of each (default: as many as `like` keeps) at
    uniformly random positions, excluded tensors whole.

    Drawn on the CPU from its own generator, so the same seed gives the same mask on every device.
    """
    return _at_random_positions(like, like.kept() if counts is None else counts, torch.Generator().manual_seed(seed))


def shuffle_mask(mask: Mask, seed: int) -> Mask:
    """Each pruned tensor's kept weights moved to random positions, the count per tensor unchanged and excluded
    tensors dense: the layerwise-shuffle control of Frankle et al. (ICLR 2021, "Pruning Neural Networks at
    Initialization: Why Are We Missing the Mark?"). Drawn again, the generator going on, while it equals `mask`, so
    that the control differs from its source wherever a tensor can change (is neither empty nor full)."""
    generator = torch.Generator().manual_seed(seed)
    movable = any(0 < count < mask[name].numel() for name, count in mask.kept().items() if name not in mask.excluded)
    while True:
        shuffled = _at_random_positions(mask, mask.kept(), generator)
        if shuffled != mask or not movable:
            return shuffled


def erk_counts(shapes: Mapping[str, tuple[int, ...]], sparsity: float,
               excluded: Collection[str] = ()) -> dict[str, int]:
    """Weights kept per tensor under the Erdős–Rényi-Kernel distribution (Evci et al., ICML 2020, "Rigging the
    Lottery"), as RigL and JaxPruner compute it: a tensor's density is proportional to the sum of its dimensions
    over their product (kernel dimensions included), scaled so that the pruned tensors together keep
    N − round(sparsity · N); a tensor whose density would pass 1 is kept whole and the others scaled again.
    Excluded tensors are kept whole and are not in N. The counts are apportioned by largest remainder, so that
    they sum to the target exactly (RigL rounds each tensor on its own)."""
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    sizes = {name: math.prod(shape) for name, shape in shapes.items() if name not in excluded}
    total = sum(sizes.values())
    keep = total - round(sparsity * total)
    whole: set[str] = set()
    density: dict[str, float] = {}
    while len(whole) < len(sizes):
        free = [name for name in sizes if name not in whole]
        raw = {name: sum(shapes[name]) / sizes[name] for name in free}
        scale = (keep - sum(sizes[name] for name in whole)) / sum(raw[name] * sizes[name] for name in free)
        densest = max(raw.values())
        if scale * densest <= 1.0:
            density = {name: scale * raw[name] for name in free}
            break
        whole |= {name for name in free if raw[name] == densest}
    ideal = {name: sizes[name] * density[name] if name in density else float(sizes[name]) for name in sizes}
    counts = {name: min(sizes[name], math.floor(ideal[name])) for name in sizes}
    by_remainder = sorted(sizes, key=lambda name: counts[name] - ideal[name])  # the largest remainder first
    short = keep - sum(counts.values())  # below 0 only where floating point put an ideal count past an integer
    for name in (by_remainder if short > 0 else reversed(by_remainder)):
        step = 1 if short > 0 else -1
        if short and 0 <= counts[name] + step <= sizes[name]:
            counts[name] += step
            short -= step
    return {name: counts[name] if name in counts else math.prod(shape) for name, shape in shapes.items()}


def _at_random_positions(like: Mask, counts: Mapping[str, int], generator: torch.Generator) -> Mask:
    """A mask of `like`'s shapes keeping counts[name] weights of each tensor at uniformly random positions (drawn
    in tensor order from `generator`, on the CPU), excluded tensors whole, on `like`'s device."""
    tensors = {}
    for name, kept in like.items():
        if name in like.excluded:
            tensors[name] = torch.ones_like(kept)
            continue
        positions = torch.randperm(kept.numel(), generator=generator)[: counts[name]]
        flat = torch.zeros(kept.numel(), dtype=torch.bool)
        flat[positions] = True
        tensors[name] = flat.view_as(kept).to(kept.device)
    return Mask(tensors, like.excluded)


def _prune_by_magnitude(
    weights: Mapping[str, Tensor],
    count_kept: Callable[[int, int], int],
    scope: Scope,
    previous: Mask | None,
    exclude: Collection[str],
) -> Mask:
    """The one magnitude pruner behind magnitude_mask and imp_round; they differ only in how many to keep.

    `count_kept(total, candidates)` says how many weights a pool keeps, given its size and how many of its
    weights are still candidates (kept by `previous`). Exclusions accumulate: a tensor excluded by `previous`
    stays excluded.
    """
    if scope not in ("layerwise", "global"):
        raise ValueError(f"scope must be 'layerwise' or 'global', got {scope!r}")
    unknown = set(exclude) - weights.keys()
    if unknown:
        raise ValueError(f"excluded names are not weights: {sorted(unknown)}")
    excluded = frozenset(exclude)
    if previous is not None:
        _check_same_layout(weights, previous)
        excluded |= previous.excluded
    prunable = [name for name in weights if name not in excluded]
    if not prunable:
        raise ValueError("nothing to prune: every tensor is excluded")

    scores, candidates = {}, {}
    for name in prunable:
        magnitude = weights[name].detach().abs().flatten()
        if previous is None:
            scores[name], candidates[name] = magnitude, magnitude.numel()
        else:
            alive = previous[name].flatten()
            scores[name] = torch.where(alive, magnitude, float("-inf"))
            candidates[name] = int(alive.sum())

    if scope == "layerwise":
        kept = {name: _keep_largest(scores[name], count_kept(scores[name].numel(), candidates[name]),
                                    candidates[name], name)
                for name in prunable}
    else:
        pooled = torch.cat([scores[name] for name in prunable])
        pool_candidates = sum(candidates.values())
        keep = count_kept(pooled.numel(), pool_candidates)
        kept_pooled = _keep_largest(pooled, keep, pool_candidates, "the global pool")
        kept = dict(zip(prunable, kept_pooled.split([scores[name].numel() for name in prunable])))

    tensors = {name: kept[name].view_as(weight) if name in kept else torch.ones_like(weight, dtype=torch.bool)
               for name, weight in weights.items()}
    return Mask(tensors, excluded)


def _keep_largest(scores: Tensor, keep: int, candidates: int, pool: str) -> Tensor:
    """Bool vector marking the `keep` largest scores; a stable sort keeps the lower index among equals."""
    if not 0 <= keep <= candidates:
        raise ValueError(f"{pool}: cannot keep {keep} weights when {candidates} remain; "
                         "a nested mask can only prune further")
    order = torch.sort(scores, descending=True, stable=True).indices
    kept = torch.zeros_like(scores, dtype=torch.bool)
    kept[order[:keep]] = True
    return kept


def _check_same_layout(weights: Mapping[str, Tensor], previous: Mask) -> None:
    if list(weights) != list(previous):
        raise ValueError(f"previous mask covers {list(previous)}, weights are {list(weights)}")
    for name, weight in weights.items():
        if weight.shape != previous[name].shape:
            raise ValueError(f"{name}: weight shape {tuple(weight.shape)} != mask shape "
                             f"{tuple(previous[name].shape)}")
