"""Mask generators: the registry, and each method on nets whose scores can be written down by hand."""

import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ltspec import masks
from ltspec.masks.snip import snip_scores
from ltspec.masks.synflow import synflow_mask
from ltspec.plan.stages import KINDS
from ltspec.pruning import magnitude_mask
from ltspec.spec.models import Spec
from ltspec.stages.kinds import REGISTRY as STAGE_KINDS


def two_layer(w1: torch.Tensor, w2: torch.Tensor) -> nn.Sequential:
    """x -> W2 W1 x: no bias, no activation, so every score has a closed form."""
    net = nn.Sequential(nn.Linear(w1.shape[1], w1.shape[0], bias=False), nn.Linear(w2.shape[1], w2.shape[0], bias=False))
    with torch.no_grad():
        net[0].weight.copy_(w1)
        net[1].weight.copy_(w2)
    return net


def weights_of(net: nn.Module) -> dict[str, nn.Parameter]:
    return {"0.weight": net[0].weight, "1.weight": net[1].weight}


W1 = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]])  # hidden 2 <- input 3
W2 = torch.tensor([[0.5, -1.5], [2.0, 1.0]])  # output 2 <- hidden 2


def test_every_generator_is_registered_with_its_table_and_no_other_kind_validates():
    assert set(masks.REGISTRY) >= {"oneshot", "imp", "admm", "random", "magnitude_init", "snip", "synflow"}
    for kind, generator in masks.REGISTRY.items():
        assert generator.settings.model_fields["kind"].annotation.__args__ == (kind,)
    base = {"name": "x", "data": {"dataset": "digits"}, "model": {"arch": "mlp"}, "train": {"epochs": 2, "lr": 0.1}}
    Spec.model_validate({**base, "masks": {"m": {"kind": "oneshot", "sparsities": [0.5]}}})
    with pytest.raises(ValueError, match="kind"):
        Spec.model_validate({**base, "masks": {"m": {"kind": "grasp", "sparsities": [0.5]}}})


def test_the_stage_kind_registry_is_the_plans_vocabulary():
    assert set(STAGE_KINDS) == set(KINDS)


def test_mask_modules_import_no_torch():
    """The spec checker imports every generator module; torch must stay out of `ltspec validate`."""
    import subprocess

    code = "import sys, ltspec.masks, ltspec.spec; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_snip_scores_are_gradient_times_weight_written_by_hand():
    net = two_layer(W1, W2)
    x, y = torch.tensor([[1.0, 2.0, -1.0], [0.5, -1.0, 2.0]]), torch.tensor([0, 1])
    scores = snip_scores(net, weights_of(net), [(x, y)])
    hidden = x @ W1.T
    logits = hidden @ W2.T
    dlogits = (torch.softmax(logits, dim=1) - nn.functional.one_hot(y, 2).float()) / len(y)
    grad_w2 = dlogits.T @ hidden
    grad_w1 = (dlogits @ W2).T @ x
    assert torch.allclose(scores["1.weight"], (grad_w2 * W2).abs(), atol=1e-6)
    assert torch.allclose(scores["0.weight"], (grad_w1 * W1).abs(), atol=1e-6)


def test_snip_sums_gradients_over_its_batches():
    net = two_layer(W1, W2)
    batches = [(torch.eye(3)[:2], torch.tensor([0, 1])), (torch.ones(1, 3), torch.tensor([1]))]
    both = snip_scores(net, weights_of(net), batches)
    grads = {}
    for batch in batches:
        net.zero_grad()
        nn.functional.cross_entropy(net(batch[0]), batch[1]).backward()
        for name, weight in weights_of(net).items():
            grads[name] = grads.get(name, 0) + weight.grad
    for name, weight in weights_of(net).items():
        assert torch.allclose(both[name], (grads[name] * weight).abs())


def test_synflow_one_round_keeps_the_top_synaptic_flow_written_by_hand():
    net = two_layer(W1, W2)
    # R = 1ᵀ|W2||W1|1: ∂R/∂|W1|[i, j] = Σ_k |W2|[k, i]; ∂R/∂|W2|[k, i] = Σ_j |W1|[i, j].
    score1 = W1.abs() * W2.abs().sum(dim=0)[:, None]
    score2 = W2.abs() * W1.abs().sum(dim=1)[None, :]
    expected = magnitude_mask({"0.weight": score1, "1.weight": score2}, 0.5, scope="global")
    mask = synflow_mask(net, ["0.weight", "1.weight"], (3,), 0.5, iterations=1)
    assert mask == expected
    assert torch.equal(net[0].weight, W1) and torch.equal(net[1].weight, W2)  # the network itself is untouched


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), sparsity=st.floats(0.05, 0.95), iterations=st.integers(1, 6),
       scope=st.sampled_from(["layerwise", "global"]))
def test_synflow_keeps_exact_counts_leaves_excluded_layers_dense_and_is_deterministic(seed, sparsity, iterations,
                                                                                        scope):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 4), nn.Linear(4, 3))
    names = ["0.weight", "3.weight", "4.weight"]
    mask = synflow_mask(net, names, (6,), sparsity, iterations, scope=scope, exclude=["0.weight"])
    assert mask == synflow_mask(net, names, (6,), sparsity, iterations, scope=scope, exclude=["0.weight"])
    assert mask["0.weight"].all()
    counted = [name for name in names if name != "0.weight"]
    if scope == "layerwise":
        for name in counted:
            n = mask[name].numel()
            assert mask.kept()[name] == n - round(sparsity * n)
    else:
        total = sum(mask[name].numel() for name in counted)
        assert sum(mask.kept()[name] for name in counted) == total - round(sparsity * total)
