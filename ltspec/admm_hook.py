"""ADMM pruning (Zhang et al., ECCV 2018) as a hook for an ordinary training loop.

Pruning to sparsity s is the constrained problem  min f(W)  s.t.  W in S = {at most k non-zeros}.
ADMM splits it with a copy Z in S and a scaled dual U: training minimises f(W) + rho/2 * ||W - Z + U||^2 by SGD
(admm_penalty is that second term), and every few steps admm_update sets Z to the projection of W + U onto S and
adds the residual W - Z to U. The weights are pulled onto Z's support, so that cutting to that support at the
end (admm_mask, then Mask.apply_) costs little accuracy. The functions below are the math; `AdmmHook` runs them
on the training harness's schedule: Z and U updated every `update_every` steps (or once per epoch), rho grown by
`rho_factor` up to `rho_max` at each update, and all of it checkpointed so a resumed run continues exactly.

Projection onto S keeps the k largest magnitudes, which is exactly magnitude_mask, so Z has the exact kept
counts (layerwise or global) of a one-shot mask at the same sparsity.
"""

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from ltspec.pruning import Mask, Scope, magnitude_mask
from ltspec.hooks import Hook


@dataclass
class AdmmState:
    """Z and U per pruned tensor, and the support of Z as a Mask (which also records the excluded tensors)."""

    Z: dict[str, Tensor]
    U: dict[str, Tensor]
    support: Mask
    rho: float
    sparsity: float
    scope: Scope


def admm_init(
    weights: Mapping[str, Tensor],
    sparsity: float,
    rho: float,
    *,
    scope: Scope = "layerwise",
    exclude: Collection[str] = (),
) -> AdmmState:
    """Start from the trained weights: Z = projection of W, U = 0."""
    _check_rho(rho)
    with torch.no_grad():
        support = magnitude_mask(weights, sparsity, scope=scope, exclude=exclude)
        Z = {name: weights[name].detach() * support[name] for name in support.pruned_names}
        U = {name: torch.zeros_like(weights[name]) for name in support.pruned_names}
    return AdmmState(Z=Z, U=U, support=support, rho=rho, sparsity=sparsity, scope=scope)


def admm_penalty(state: AdmmState, weights: Mapping[str, Tensor]) -> Tensor:
    """rho/2 * sum over pruned tensors of ||W - Z + U||^2, differentiable in W; add it to the loss."""
    residuals = (weights[name] - state.Z[name] + state.U[name] for name in state.Z)
    return state.rho / 2 * sum(residual.square().sum() for residual in residuals)


def admm_update(state: AdmmState, weights: Mapping[str, Tensor]) -> None:
    """The Z and U steps: Z = projection of W + U onto the sparsity set, then U += W - Z."""
    if list(weights) != list(state.support):
        raise ValueError(f"ADMM was set up for {list(state.support)}, got weights {list(weights)}")
    with torch.no_grad():
        shifted = {name: weight.detach() + state.U[name] if name in state.U else weight.detach()
                   for name, weight in weights.items()}
        state.support = magnitude_mask(shifted, state.sparsity, scope=state.scope,
                                       exclude=state.support.excluded)
        for name in state.Z:
            state.Z[name] = shifted[name] * state.support[name]
            state.U[name] += weights[name].detach() - state.Z[name]


def admm_set_rho(state: AdmmState, rho: float) -> None:
    """Change rho for a schedule (Zhang et al. grow it as training goes), keeping the dual variable.

    U is the dual scaled by 1/rho, so it is rescaled by old/new rho: the unscaled dual rho * U carries over
    unchanged (Boyd et al. 2011, §3.4.1), and the penalty's pull grows with rho as intended.
    """
    _check_rho(rho)
    with torch.no_grad():
        torch._foreach_mul_(list(state.U.values()), state.rho / rho)
    state.rho = rho


def admm_mask(state: AdmmState) -> Mask:
    """The support of the current Z: the mask to prune to when ADMM training ends."""
    return state.support


def _check_rho(rho: float) -> None:
    if not rho > 0:
        raise ValueError(f"rho must be positive, got {rho}")


class AdmmHook(Hook):
    """ADMM training as a hook: the penalty at every step, the Z/U updates on their schedule, state checkpointed."""

    name = "admm"

    def __init__(self, weights: Mapping[str, Tensor], sparsity: float, rho: float, *, scope: Scope = "layerwise",
                 exclude: Collection[str] = (), rho_factor: float = 1.0, rho_max: float = 1.0,
                 update_every: int | None = None):
        self.weights, self.rho_factor, self.rho_max, self.update_every = weights, rho_factor, rho_max, update_every
        self.state = admm_init(weights, sparsity, rho, scope=scope, exclude=exclude)
        self.steps = 0

    def penalty(self) -> Tensor:
        return admm_penalty(self.state, self.weights)

    def after_step(self) -> None:
        self.steps += 1
        if self.update_every and self.steps % self.update_every == 0:
            self._update()

    def end_epoch(self, epoch: int, values: dict[str, float]) -> None:
        if not self.update_every:
            self._update()

    def state_dict(self) -> dict:
        state = self.state
        return {"Z": _on(state.Z, "cpu"), "U": _on(state.U, "cpu"), "rho": state.rho,
                "support": _on(state.support.tensors, "cpu"), "steps": self.steps}

    def load_state_dict(self, saved: dict) -> None:
        device = next(iter(self.weights.values())).device
        self.state.Z, self.state.U = _on(saved["Z"], device), _on(saved["U"], device)
        self.state.rho = saved["rho"]
        self.state.support = Mask(_on(saved["support"], device), self.state.support.excluded)
        self.steps = saved["steps"]

    def mask(self) -> Mask:
        return admm_mask(self.state)

    def _update(self) -> None:
        admm_update(self.state, self.weights)
        admm_set_rho(self.state, min(self.state.rho * self.rho_factor, self.rho_max))


def _on(tensors: Mapping[str, Tensor], device) -> dict[str, Tensor]:
    return {name: tensor.detach().to(device) for name, tensor in tensors.items()}
