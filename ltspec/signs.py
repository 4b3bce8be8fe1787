"""Starts that keep θ0's signs and replace its magnitudes: the "signs matter" controls of Zhou, Lan, Liu & Yosinski
(NeurIPS 2019, "Deconstructing Lottery Tickets: Zeros, Signs, and the Supermask").

A lottery ticket restarts from θ0 ⊙ m. Zhou et al. found that what it needs of θ0 is mostly the signs: a ticket
whose weights keep θ0's signs but take other magnitudes trains nearly as well, one with other signs does not. Two
such starts, for the tensors a mask covers (conv and linear weights; batch norm and biases stay θ0's):
- `signs-reinit`: |θ0'| · sign(θ0), the magnitudes of a fresh draw θ0' of the same initialiser;
- `signs-constant`: α_l · sign(θ0), α_l the root mean square of tensor l at θ0 (Zhou et al.'s constant is the
  standard deviation of the layer's initial distribution, which has mean 0: this estimates it from the layer
  itself, and is 0 only for a layer of zeros).
The arm's mask then zeroes the pruned weights, as for any start.
"""

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor


def signs_with_magnitudes(init: Mapping[str, Tensor], magnitudes: Mapping[str, Tensor],
                          names: Iterable[str]) -> dict[str, Tensor]:
    """θ0 with the tensors `names` replaced by |magnitudes| · sign(θ0)."""
    chosen = set(names)
    return {name: magnitudes[name].abs() * torch.sign(tensor) if name in chosen else tensor.clone()
            for name, tensor in init.items()}


def signs_with_constant(init: Mapping[str, Tensor], names: Iterable[str]) -> dict[str, Tensor]:
    """θ0 with the tensors `names` replaced by rms(θ0 tensor) · sign(θ0): one magnitude per tensor."""
    chosen = set(names)
    return {name: _root_mean_square(tensor) * torch.sign(tensor) if name in chosen else tensor.clone()
            for name, tensor in init.items()}


def _root_mean_square(tensor: Tensor) -> Tensor:
    """In float64, so that the squares of tiny weights do not vanish."""
    return tensor.double().square().mean().sqrt().to(tensor.dtype)
