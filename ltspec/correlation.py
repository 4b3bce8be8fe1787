"""The correlation indicator R_p of Liu et al. (ICML 2021, Eq. 1).

R_p asks how far two weight sets of one network agree on *which* weights are large. In each layer l, T_p(θ^l)
is the set of the top-p fraction of weights by magnitude, and R_p is the fraction of those slots on which θ and
θ' pick the same weight:

    R_p(θ, θ') = Σ_l |T_p(θ^l) ∩ T_p(θ'^l)| / Σ_l k_l,    k_l = round(p · N_l).

Two independent weight sets give R_p ≈ p (two random k-subsets of N share k²/N on average); the same magnitude
ranking gives R_p = 1.

Conventions, each chosen so that the number is reproducible and means what the paper means:

- k_l = round(p · N_l), Python's round (half to even). The paper divides by p · Σ_l N_l; whole k_l make that
  differ from Σ_l k_l by up to half a weight per layer, so the denominator here is Σ_l k_l, the number of slots
  actually compared: R_p(θ, θ) is then exactly 1 and R_p is a true fraction in [0, 1]. For real networks
  (Σ_l N_l far above the number of layers) the two denominators agree far within seed-to-seed noise.
- Ties in magnitude go to the lower flat index (a stable sort on -|w|), so equal magnitudes (zeros, quantised
  weights) give the same top set on every run and device.
- Two networks trained on the same mask: N_l and the top-p are over the kept weights of layer l only, because
  pruned weights are zero in both and would otherwise count as agreement.
- A sparse network against a dense one (no mask): p is relative to all N_l and must stay below 1 − sparsity, so
  that the sparse network's top-p holds no pruned zero; `check_sparse_dense_p` enforces this.
- Which tensors count is the caller's choice: pass only those in the dicts. The usual selection (conv and linear
  weights, never BatchNorm parameters or biases) belongs to the caller.

All the work stays on the tensors' device; the per-layer counts come back to the host in one transfer at the end.
Each tensor is sorted once (`magnitude_ranks`) however many p and pairs it is measured at.
"""

import math
from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor


class Ranks(NamedTuple):
    """A tensor's flat entries ranked by magnitude, and how many of them are kept (N_l, a 0-d tensor)."""

    rank: Tensor
    kept: Tensor


def top_p_indices(w: Tensor, p: float, keep: Tensor | None = None) -> Tensor:
    """Flat indices of the round(p · N) largest-magnitude entries of w, largest first, ties to the lower index.

    With `keep` (a bool tensor shaped like w, True = kept), only kept entries compete and N is their number, so
    a pruned weight is never in the top set.
    """
    _check_p(p)
    _check_keep("keep", w, keep)
    k = int(_top_count(p, _kept_count(w, keep)))
    return _magnitude_order(w, keep)[:k]


def overlap_by_layer(
    a: Mapping[str, Tensor], b: Mapping[str, Tensor], p: float, *, mask: Mapping[str, Tensor] | None = None
) -> dict[str, tuple[int, int]]:
    """Per layer, (|T_p(a^l) ∩ T_p(b^l)|, k_l): the terms of R_p, for reports that break it down by layer.

    A layer missing from `mask` counts as dense (the paper never prunes the first conv), and mask entries for
    layers not in `a` are ignored, so one mask serves any selection of tensors.
    """
    _check_p(p)
    _check_layers(a, b, mask)
    return overlap_of_ranks(magnitude_ranks(a, mask), magnitude_ranks(b, mask), p)


def magnitude_ranks(weights: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None = None) -> dict[str, Ranks]:
    """Each tensor's entries ranked by decreasing magnitude (0 = largest; ties to the lower index; pruned entries
    last), with its kept count N_l: sorted once, a tensor answers top-p membership for every p (`rank < k_l`)."""
    ranked = {}
    for name, w in weights.items():
        keep = None if mask is None else mask.get(name)
        order = _magnitude_order(w, keep)
        rank = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=order.device))
        ranked[name] = Ranks(rank, _kept_count(w, keep))
    return ranked


def overlap_of_ranks(a: Mapping[str, Ranks], b: Mapping[str, Ranks], p: float) -> dict[str, tuple[int, int]]:
    """`overlap_by_layer` from `magnitude_ranks` of both sides (made with the same mask)."""
    _check_p(p)
    terms = []
    for name in a:
        k = _top_count(p, a[name].kept)
        terms.append(torch.stack([((a[name].rank < k) & (b[name].rank < k)).sum(), k]))
    if not terms:
        return {}
    return {name: (shared, k) for name, (shared, k) in zip(a, torch.stack(terms).tolist())}


def overlap_ratio(
    a: Mapping[str, Tensor], b: Mapping[str, Tensor], p: float, *, mask: Mapping[str, Tensor] | None = None
) -> float:
    """R_p(a, b): the fraction of top-p slots, over all layers, on which a and b pick the same weight."""
    terms = overlap_by_layer(a, b, p, mask=mask).values()
    slots = sum(k for _, k in terms)
    if slots == 0:
        raise ValueError(f"no layer has a weight in its top-{p} set (too few weights kept for p): R_p is undefined")
    return sum(shared for shared, _ in terms) / slots


def check_sparse_dense_p(sparsity: float, p: float) -> None:
    """Raise ValueError unless p < 1 − sparsity, the condition for measuring a sparse network against a dense one.

    Without a mask, the sparse network's pruned zeros compete for its top-p; once p reaches its density they
    enter in tie-break (index) order, and R_p would measure index order, not magnitude. For a global mask, whose
    layers differ in sparsity, pass the largest per-layer sparsity among the measured tensors.
    """
    _check_p(p)
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if not p < 1 - sparsity:
        raise ValueError(
            f"p = {p} must be below the density 1 - sparsity = {1 - sparsity:g} to measure a network of "
            f"sparsity {sparsity} against a dense one: otherwise its pruned zeros enter its top-p set"
        )


def _magnitude_order(w: Tensor, keep: Tensor | None) -> Tensor:
    """Flat indices of w by decreasing magnitude, ties to the lower index, pruned entries last."""
    key = -w.detach().flatten().abs()
    if keep is not None:
        key = key.masked_fill(~keep.flatten(), math.inf)
    return torch.sort(key, stable=True).indices


def _kept_count(w: Tensor, keep: Tensor | None) -> Tensor:
    """N_l as a 0-d tensor on w's device."""
    return torch.full((), w.numel(), device=w.device) if keep is None else keep.sum()


def _top_count(p: float, n: Tensor) -> Tensor:
    """k_l = round(p · N_l), computed in float64 so that it equals Python's round(p * N) exactly."""
    return torch.round(n.double() * p).long()


def _check_p(p: float) -> None:
    if not 0 < p <= 1:
        raise ValueError(f"p must be in (0, 1], got {p}")


def _check_keep(name: str, w: Tensor, keep: Tensor | None) -> None:
    if keep is None:
        return
    if keep.dtype != torch.bool or keep.shape != w.shape:
        raise ValueError(
            f"{name} must be a bool tensor of shape {tuple(w.shape)}, got {keep.dtype} of shape {tuple(keep.shape)}"
        )


def _check_layers(a: Mapping[str, Tensor], b: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None) -> None:
    if a.keys() != b.keys():
        raise ValueError(f"the two weight sets name different tensors: {sorted(a.keys() ^ b.keys())}")
    for name in a:
        if a[name].shape != b[name].shape:
            raise ValueError(f"{name}: shapes differ, {tuple(a[name].shape)} vs {tuple(b[name].shape)}")
        if mask is not None:
            _check_keep(f"mask[{name!r}]", a[name], mask.get(name))
