import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ltspec.admm_hook import admm_init, admm_mask, admm_penalty, admm_set_rho, admm_update
from ltspec.pruning import magnitude_mask


def small_weights(seed):
    generator = torch.Generator().manual_seed(seed)
    return {"conv1.weight": torch.randn(3, 4, generator=generator),
            "fc1.weight": torch.randn(6, 5, generator=generator),
            "fc2.weight": torch.randn(7, generator=generator)}


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), sparsity=st.floats(0.0, 1.0), scope=st.sampled_from(["layerwise", "global"]))
def test_init_projects_the_weights_and_zeroes_the_dual(seed, sparsity, scope):
    weights = small_weights(seed)
    state = admm_init(weights, sparsity, rho=0.5, scope=scope, exclude=["conv1.weight"])
    expected = magnitude_mask(weights, sparsity, scope=scope, exclude=["conv1.weight"])
    assert admm_mask(state) == expected
    assert list(state.Z) == list(state.U) == ["fc1.weight", "fc2.weight"]
    for name in state.Z:
        assert torch.equal(state.Z[name], weights[name] * expected[name])
        assert not state.U[name].any()
    pruned_energy = sum(weights[name][~expected[name]].square().sum() for name in state.Z)
    assert admm_penalty(state, weights).item() == pytest.approx(0.25 * pruned_energy.item(), rel=1e-5)


def test_update_projects_w_plus_u_and_accumulates_the_residual():
    weights = {"w": torch.tensor([3.0, -1.0, 0.5, 2.0])}
    state = admm_init(weights, 0.5, rho=1.0)
    state.U["w"] = torch.tensor([0.0, -2.5, 0.0, 0.0])
    admm_update(state, weights)
    assert torch.equal(state.Z["w"], torch.tensor([3.0, -3.5, 0.0, 0.0]))
    assert torch.equal(state.U["w"], torch.tensor([0.0, 0.0, 0.5, 2.0]))
    assert admm_mask(state)["w"].tolist() == [True, True, False, False]


def test_penalty_gradient_pulls_toward_z_minus_u():
    weights = {"w": torch.nn.Parameter(torch.tensor([3.0, -1.0, 0.5, 2.0]))}
    state = admm_init(weights, 0.5, rho=2.0)
    state.U["w"] = torch.tensor([0.5, 0.0, -0.5, 1.0])
    admm_penalty(state, weights).backward()
    expected = 2.0 * (weights["w"].detach() - state.Z["w"] + state.U["w"])
    assert torch.allclose(weights["w"].grad, expected)


def test_set_rho_keeps_the_unscaled_dual():
    weights = small_weights(0)
    state = admm_init(weights, 0.5, rho=0.1)
    admm_update(state, {name: weight * 1.1 for name, weight in weights.items()})
    dual = {name: 0.1 * u for name, u in state.U.items()}
    admm_set_rho(state, 0.4)
    assert state.rho == 0.4
    for name, u in state.U.items():
        assert torch.allclose(0.4 * u, dual[name])
    with pytest.raises(ValueError, match="rho"):
        admm_set_rho(state, 0.0)


def test_admm_training_concentrates_the_weights_on_the_final_support():
    torch.manual_seed(0)
    inputs = torch.randn(64, 16)
    targets = torch.tanh(inputs @ torch.randn(16, 8)) @ torch.randn(8, 4)
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    weights = {name: param for name, param in model.named_parameters() if name.endswith("weight")}

    def step(penalty):
        optimizer.zero_grad()
        (torch.nn.functional.mse_loss(model(inputs), targets) + penalty()).backward()
        optimizer.step()

    for _ in range(50):
        step(lambda: 0.0)
    start = {name: weight.detach().clone() for name, weight in weights.items()}
    state = admm_init(weights, 0.75, rho=0.5)
    for index in range(150):
        step(lambda: admm_penalty(state, weights))
        if index % 5 == 4:
            admm_update(state, weights)
        if index % 30 == 29:
            admm_set_rho(state, state.rho * 1.5)

    mask = admm_mask(state)
    assert mask.kept() == {"0.weight": 64, "2.weight": 16}
    outside_before = sum(start[name].abs()[~mask[name]].sum() for name in weights)
    outside_after = sum(weight.detach().abs()[~mask[name]].sum() for name, weight in weights.items())
    inside_after = sum(weight.detach().abs()[mask[name]].sum() for name, weight in weights.items())
    assert outside_after < 0.1 * outside_before
    assert outside_after < 0.05 * inside_after


def test_update_keeps_exclusions_and_exact_counts_and_checks_the_weights():
    weights = small_weights(1)
    state = admm_init(weights, 0.6, rho=1.0, scope="global", exclude=["conv1.weight"])
    admm_update(state, {name: weight + 0.3 for name, weight in weights.items()})
    mask = admm_mask(state)
    assert mask.excluded == {"conv1.weight"} and mask["conv1.weight"].all()
    assert mask.kept()["fc1.weight"] + mask.kept()["fc2.weight"] == 37 - round(0.6 * 37)
    with pytest.raises(ValueError, match="set up for"):
        admm_update(state, {"fc1.weight": weights["fc1.weight"]})
