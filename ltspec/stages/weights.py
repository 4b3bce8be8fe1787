"""The weights and masks stages hand each other through the store.

A trunk's dense points (θ0, θ0', θk, θT) are artifacts of its dense stage; a mask stage stores its mask, and, for a
generator that trains (ADMM, gradual), the network it trained; a train stage stores its final weights. The file
names are the kinds' own (`ltspec.kinds.dense`, `.mask`, `.train`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from torch import Tensor

from ltspec import points
from ltspec.kinds.dense import INIT, REINIT, TRAINED
from ltspec.kinds.mask import GENERATOR_TRAINED, MASK, MASK_EXCLUDED
from ltspec.kinds.train import FINAL
from ltspec.nets import state_on_cpu
from ltspec.pruning import Mask
from ltspec.signs import signs_with_constant, signs_with_magnitudes
from ltspec.stages import harness
from ltspec.stages.context import Context, model


def dense_point(ctx: Context, trunk: str, name: str) -> dict[str, Tensor]:
    """A dense weight point of a trunk; a sign-keeping one is made from θ0 (and θ0'); a rewind point the trunk did
    not keep (it was trained for another spec) is replayed from θ0 for k epochs, which gives the same weights on
    the CPU since every epoch is seeded."""
    if ctx.store.has(trunk, name):
        return ctx.store.read_tensors(trunk, name)
    if name in (points.SIGNS_REINIT, points.SIGNS_CONSTANT):
        return _keeping_signs(ctx, trunk, name)
    epochs = points.rewind_epoch(name)
    if epochs is None:
        raise FileNotFoundError(f"stage {trunk} has no artifact {name}")
    stage = ctx.stages[trunk]
    config = stage.config
    replay = replace(stage, config=replace(config, replay_until=epochs), epochs=epochs,
                     runtime={**stage.runtime, "compile": False})
    network = model(config.data, config.model, config.seed)
    network.load_state_dict(ctx.store.read_tensors(trunk, INIT))
    harness.train(replay, ctx, network, config.train, config.data, config.seed, lambda rows: None, epochs=epochs)
    ctx.store.write_tensors(trunk, name, state_on_cpu(network))
    ctx.store.clear_checkpoint(replay.key)
    return ctx.store.read_tensors(trunk, name)


def _keeping_signs(ctx: Context, trunk: str, name: str) -> dict[str, Tensor]:
    """θ0 whose conv and linear weights keep their signs and take the magnitudes of θ0' or of one constant per
    layer (`ltspec.signs`)."""
    init = ctx.store.read_tensors(trunk, INIT)
    weights = ctx.stages[trunk].config.model.weight_names(["conv", "linear"])
    if name == points.SIGNS_REINIT:
        return signs_with_magnitudes(init, ctx.store.read_tensors(trunk, REINIT), weights)
    return signs_with_constant(init, weights)


def start_weights(ctx: Context, trunk: str, mask_key: str, start: str) -> dict[str, Tensor]:
    """θ0, θ0', θk or θT; for a generator that trains (ADMM, gradual), `trained` is the network it trained and
    pruned, so that fine-tuning continues from it (prune, then fine-tune)."""
    if start == TRAINED and ctx.store.has(mask_key, GENERATOR_TRAINED):
        return ctx.store.read_tensors(mask_key, GENERATOR_TRAINED)
    return dense_point(ctx, trunk, start)


def point_weights(ctx: Context, trunk: str, term: str, results: Mapping[str, str],
                  mask: Mask | None) -> dict[str, Tensor]:
    """A weight point's whole state: a trunk's dense point (its masked tensors multiplied by the mask for `X*mask`)
    or the final weights of the stage `results` names for an arm (or a copy of one)."""
    point = points.parse(term)
    if not point.dense:
        return ctx.store.read_tensors(results[point.name], FINAL)
    state = dense_point(ctx, trunk, point.base)
    if point.masked:
        state = {name: tensor * mask[name].to(tensor.device) if name in mask else tensor
                 for name, tensor in state.items()}
    return state


def load_mask(ctx: Context, key: str, name: str = MASK) -> Mask:
    """A mask stage's mask, or another mask it stored (a snapshot of its run), with the layers it keeps whole."""
    return Mask(ctx.store.read_tensors(key, name), frozenset(ctx.store.read_json(key, MASK_EXCLUDED)))


def save_mask(ctx: Context, key: str, mask: Mask, name: str = MASK) -> None:
    ctx.store.write_tensors(key, name, {tensor_name: tensor.detach().cpu() for tensor_name, tensor in mask.items()})
    ctx.store.write_json(key, MASK_EXCLUDED, sorted(mask.excluded))
