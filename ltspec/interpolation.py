"""The straight path between two networks and the error barrier on it (Frankle, Dziugaite, Roy & Carbin, ICML 2020,
"Linear Mode Connectivity and the Lottery Ticket Hypothesis").

Two networks are linearly connected when the error of (1 − α)·a + α·b stays at the level of the ends for every α
in [0, 1]. The error barrier is the largest error along the path minus the mean of the two ends' errors; the paper
calls an arm stable to SGD noise when the barrier between two copies trained under different noise is about 0.

Batch norm needs a decision. The running statistics of the interpolated network are not the interpolation of the
two ends' statistics (a unit's mean over the data is not linear in the weights, its variance even less so), and
evaluating with interpolated statistics adds a mismatch of normalisation to the barrier. `recompute_batch_norm`
re-estimates them from the data instead, with the network's own weights, as later work on linear connectivity does
(Ainsworth et al., "Git Re-Basin", ICLR 2023; Jordan et al., "REPAIR", ICLR 2023). Which one a stage uses is its
setting; the README gives the default and why.
"""

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn


def interpolate(a: Mapping[str, Tensor], b: Mapping[str, Tensor], alpha: float) -> dict[str, Tensor]:
    """(1 − α)·a + α·b for every floating tensor; other tensors (batch norm's batch counter) are a's.

    Exactly a at α = 0 and exactly b at α = 1; where a and b hold the same value (a network with itself, a weight
    both prune) the result is that value at every α, which floating point would otherwise miss by an ulp.
    """
    if a.keys() != b.keys():
        raise ValueError(f"the two networks have different tensors: {sorted(a.keys() ^ b.keys())}")
    mixed = {}
    for name, start in a.items():
        end = b[name]
        if start.shape != end.shape:
            raise ValueError(f"{name}: shapes {tuple(start.shape)} and {tuple(end.shape)} differ")
        if start.is_floating_point():
            mixed[name] = torch.where(start == end, start, (1.0 - alpha) * start + alpha * end)
        else:
            mixed[name] = start.clone()
    return mixed


def recompute_batch_norm(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]) -> None:
    """Replace every batch norm's running statistics by their average over `batches`, computed with the model's
    current weights (a cumulative average, each batch weighted alike); no gradient, no other module in train mode.
    The model is left in eval mode."""
    norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    device = next(model.parameters()).device
    momenta = [norm.momentum for norm in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    with torch.no_grad():
        for x, _ in batches:
            model(x.to(device))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()


def error_barrier(errors: Sequence[float]) -> float:
    """The largest error along the path minus the mean of its two ends' errors (≥ 0)."""
    return max(errors) - (errors[0] + errors[-1]) / 2
