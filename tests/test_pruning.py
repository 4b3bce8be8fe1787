import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils import prune

from ltspec.pruning import Mask, dense_mask, imp_round, magnitude_mask, random_mask, select_prunable

any_shapes = st.lists(st.lists(st.integers(1, 6), min_size=1, max_size=3), min_size=1, max_size=4)
any_seed = st.integers(0, 2**16)
any_fraction = st.floats(0.0, 1.0)


def distinct_weights(shapes, seed):
    """Weights whose magnitudes are pairwise distinct across all tensors, so that no pruner faces a tie."""
    generator = torch.Generator().manual_seed(seed)
    sizes = [math.prod(shape) for shape in shapes]
    magnitudes = (torch.randperm(sum(sizes), generator=generator) + 1).float()
    signs = torch.randint(0, 2, (sum(sizes),), generator=generator) * 2 - 1
    chunks = (magnitudes * signs).split(sizes)
    return {f"layer{i}.weight": chunk.view(shape) for i, (chunk, shape) in enumerate(zip(chunks, shapes))}


def tied_weights(shapes, seed):
    """Weights drawn from five values, so that ties in magnitude are everywhere."""
    generator = torch.Generator().manual_seed(seed)
    return {f"layer{i}.weight": torch.randint(-2, 3, shape, generator=generator).float()
            for i, shape in enumerate(shapes)}


def pruned_count(fraction, n):
    return round(fraction * n)


def assert_threshold(weights, mask, names):
    """Every kept weight in `names` is at least as large in magnitude as every pruned one."""
    magnitudes = torch.cat([weights[name].abs().flatten() for name in names])
    kept = torch.cat([mask[name].flatten() for name in names])
    if kept.any() and (~kept).any():
        assert magnitudes[kept].min() >= magnitudes[~kept].max()


@settings(max_examples=40, deadline=None)
@given(shapes=any_shapes, seed=any_seed, sparsity=any_fraction, data=st.data())
def test_layerwise_mask_keeps_exact_counts_and_largest_weights(shapes, seed, sparsity, data):
    weights = tied_weights(shapes, seed)
    exclude = data.draw(st.sets(st.sampled_from(list(weights))).filter(lambda s: len(s) < len(weights)))
    mask = magnitude_mask(weights, sparsity, exclude=exclude)
    assert list(mask) == list(weights) and mask.excluded == exclude
    for name, weight in weights.items():
        if name in exclude:
            assert mask[name].all()
        else:
            assert mask.kept()[name] == weight.numel() - pruned_count(sparsity, weight.numel())
            assert_threshold(weights, mask, [name])
    prunable = [name for name in weights if name not in exclude]
    total = sum(weights[name].numel() for name in prunable)
    assert mask.density() == pytest.approx(sum(mask.kept()[name] for name in prunable) / total)


@settings(max_examples=40, deadline=None)
@given(shapes=any_shapes, seed=any_seed, sparsity=any_fraction)
def test_global_mask_keeps_exact_count_under_one_threshold(shapes, seed, sparsity):
    weights = tied_weights(shapes, seed)
    mask = magnitude_mask(weights, sparsity, scope="global")
    total = sum(weight.numel() for weight in weights.values())
    assert sum(mask.kept().values()) == total - pruned_count(sparsity, total)
    assert_threshold(weights, mask, list(weights))


@settings(max_examples=40, deadline=None)
@given(shapes=any_shapes, seeds=st.tuples(any_seed, any_seed), sparsities=st.tuples(any_fraction, any_fraction),
       scope=st.sampled_from(["layerwise", "global"]))
def test_mask_with_previous_is_nested_with_total_target_counts(shapes, seeds, sparsities, scope):
    first, second = min(sparsities), max(sparsities)
    previous = magnitude_mask(tied_weights(shapes, seeds[0]), first, scope=scope)
    weights = tied_weights(shapes, seeds[1])
    mask = magnitude_mask(weights, second, scope=scope, previous=previous)
    for name, weight in weights.items():
        assert not (mask[name] & ~previous[name]).any()
        if scope == "layerwise":
            assert mask.kept()[name] == weight.numel() - pruned_count(second, weight.numel())
    total = sum(weight.numel() for weight in weights.values())
    if scope == "global":
        assert sum(mask.kept().values()) == total - pruned_count(second, total)


@settings(max_examples=30, deadline=None)
@given(shapes=any_shapes, seed=any_seed, rate=st.floats(0.05, 0.6), rounds=st.integers(1, 5),
       scope=st.sampled_from(["layerwise", "global"]))
def test_imp_rounds_are_nested_and_follow_the_geometric_schedule(shapes, seed, rate, rounds, scope):
    weights = tied_weights(shapes, seed)
    mask = dense_mask(weights)
    for round_index in range(rounds):
        retrained = tied_weights(shapes, seed + round_index + 1)
        next_mask = imp_round(retrained, rate, mask, scope=scope)
        for name in weights:
            assert not (next_mask[name] & ~mask[name]).any()
        if scope == "layerwise":
            for name, kept in mask.kept().items():
                assert next_mask.kept()[name] == kept - round(rate * kept)
        else:
            kept = sum(mask.kept().values())
            assert sum(next_mask.kept().values()) == kept - round(rate * kept)
        mask = next_mask
    pools = [weights[name].numel() for name in weights] if scope == "layerwise" else \
        [sum(weight.numel() for weight in weights.values())]
    kept = list(mask.kept().values()) if scope == "layerwise" else [sum(mask.kept().values())]
    for n, count in zip(pools, kept):
        assert abs(count - (1 - rate) ** rounds * n) <= rounds


def test_imp_round_keeps_exclusions_dense_and_accumulates_them():
    weights = tied_weights([[4, 4], [10], [3, 3]], seed=0)
    first = imp_round(weights, 0.5, dense_mask(weights), exclude=["layer0.weight"])
    second = imp_round(weights, 0.5, first)
    assert second.excluded == {"layer0.weight"} and second["layer0.weight"].all()
    # 10 weights keep 10 - round(5) = 5, then 5 - round(2.5) = 3; 9 keep 9 - round(4.5) = 5, then 3.
    assert second.kept() == {"layer0.weight": 16, "layer1.weight": 3, "layer2.weight": 3}
    assert second.density() == pytest.approx(6 / 19)


@settings(max_examples=30, deadline=None)
@given(shapes=any_shapes, seed=any_seed, sparsity=any_fraction)
def test_layerwise_mask_matches_torch_l1_unstructured(shapes, seed, sparsity):
    weights = distinct_weights(shapes, seed)
    mask = magnitude_mask(weights, sparsity)
    for name, weight in weights.items():
        holder = torch.nn.Module()
        holder.weight = torch.nn.Parameter(weight.clone())
        prune.l1_unstructured(holder, "weight", amount=pruned_count(sparsity, weight.numel()))
        assert torch.equal(mask[name], holder.weight_mask.bool())


@settings(max_examples=30, deadline=None)
@given(shapes=any_shapes, seed=any_seed, sparsity=any_fraction)
def test_global_mask_matches_torch_global_unstructured(shapes, seed, sparsity):
    weights = distinct_weights(shapes, seed)
    mask = magnitude_mask(weights, sparsity, scope="global")
    holders = []
    for weight in weights.values():
        holder = torch.nn.Module()
        holder.weight = torch.nn.Parameter(weight.clone())
        holders.append(holder)
    total = sum(weight.numel() for weight in weights.values())
    prune.global_unstructured([(holder, "weight") for holder in holders], pruning_method=prune.L1Unstructured,
                              amount=pruned_count(sparsity, total))
    for name, holder in zip(weights, holders):
        assert torch.equal(mask[name], holder.weight_mask.bool())


def test_ties_keep_the_lower_index():
    weights = {"a.weight": torch.ones(2, 3), "b.weight": -torch.ones(4)}
    layerwise = magnitude_mask(weights, 0.5)
    assert layerwise["a.weight"].flatten().tolist() == [True, True, True, False, False, False]
    assert layerwise["b.weight"].tolist() == [True, True, False, False]
    overall = magnitude_mask(weights, 0.5, scope="global")
    assert overall["a.weight"].flatten().tolist() == [True, True, True, True, True, False]
    assert not overall["b.weight"].any()


def test_rounding_is_half_to_even():
    weights = {"a.weight": torch.arange(1.0, 6.0), "b.weight": torch.arange(1.0, 8.0)}
    mask = magnitude_mask(weights, 0.5)
    assert mask.kept() == {"a.weight": 3, "b.weight": 3}  # 2.5 rounds to 2 pruned, 3.5 to 4


def test_invalid_arguments_are_rejected():
    weights = {"a.weight": torch.randn(10), "b.weight": torch.randn(5)}
    with pytest.raises(ValueError, match="sparsity"):
        magnitude_mask(weights, 1.5)
    with pytest.raises(ValueError, match="scope"):
        magnitude_mask(weights, 0.5, scope="per-channel")
    with pytest.raises(ValueError, match="not weights"):
        magnitude_mask(weights, 0.5, exclude=["conv1.weight"])
    with pytest.raises(ValueError, match="nothing to prune"):
        magnitude_mask(weights, 0.5, exclude=list(weights))
    with pytest.raises(ValueError, match="only prune further"):
        magnitude_mask(weights, 0.2, previous=magnitude_mask(weights, 0.5))
    with pytest.raises(ValueError, match="shape"):
        magnitude_mask({"a.weight": torch.randn(2, 5), "b.weight": torch.randn(5)}, 0.5,
                       previous=dense_mask(weights))
    with pytest.raises(ValueError, match="bool"):
        Mask({"a.weight": torch.ones(3)})
    with pytest.raises(ValueError, match="fully kept"):
        Mask({"a.weight": torch.tensor([True, False])}, frozenset({"a.weight"}))


def test_select_prunable_matches_module_and_parameter_names():
    names = ["conv1.weight", "layer1.0.conv1.weight", "layer1.0.conv2.weight", "fc.weight", "fc.bias"]
    assert select_prunable(names, ["conv1"]) == (names[1:], ["conv1.weight"])
    assert select_prunable(names, ["layer1.*.conv1", "fc.bias"]) == (
        ["conv1.weight", "layer1.0.conv2.weight", "fc.weight"], ["layer1.0.conv1.weight", "fc.bias"])
    assert select_prunable(names, ["fc"]) == (names[:3], ["fc.weight", "fc.bias"])
    assert select_prunable(names, []) == (names, [])


optimizers = {
    "sgd-momentum-decay": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4),
    "sgd-nesterov": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True,
                                                       weight_decay=1e-3),
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr, weight_decay=1e-4),
    "adamw": lambda params, lr: torch.optim.AdamW(params, lr=lr, weight_decay=0.1),
}


@pytest.mark.parametrize("optimizer_name", list(optimizers))
@settings(max_examples=10, deadline=None)
@given(seed=any_seed, steps=st.integers(1, 8), lr=st.floats(1e-3, 1.0))
def test_pruned_weights_stay_zero_after_every_optimizer_step(optimizer_name, seed, steps, lr):
    generator = torch.Generator().manual_seed(seed)
    shapes = {"conv1.weight": (3, 2, 2), "conv2.weight": (4, 3, 2), "fc.weight": (5, 4)}
    params = {name: torch.nn.Parameter(torch.randn(shape, generator=generator)) for name, shape in shapes.items()}
    mask = magnitude_mask(params, 0.6, exclude=["conv1.weight"])
    mask.apply_(params)
    optimizer = optimizers[optimizer_name](params.values(), lr)
    for _ in range(steps):
        for param in params.values():
            param.grad = torch.randn(param.shape, generator=generator)
        optimizer.step()
        before = {name: param.detach().clone() for name, param in params.items()}
        mask.apply_(params)
        for name, param in params.items():
            assert torch.equal(param[mask[name]], before[name][mask[name]])
            assert (param[~mask[name]] == 0).all()


def test_apply_follows_the_dtype_of_the_parameters():
    mask = magnitude_mask({"a.weight": torch.arange(1.0, 7.0)}, 0.5)
    for dtype in (torch.float64, torch.bfloat16, torch.float32):
        params = {"a.weight": torch.arange(1.0, 7.0, dtype=dtype)}
        mask.apply_(params)
        assert params["a.weight"].dtype == dtype
        assert params["a.weight"].tolist() == [0, 0, 0, 4, 5, 6]


@settings(max_examples=20, deadline=None)
@given(shapes=any_shapes, seed=any_seed, sparsity=st.floats(0.1, 0.9))
def test_random_mask_keeps_per_tensor_counts_and_is_seeded(shapes, seed, sparsity):
    like = magnitude_mask(distinct_weights(shapes, seed), sparsity)
    shuffled = random_mask(like, seed=seed)
    assert shuffled.kept() == like.kept() and shuffled.excluded == like.excluded
    assert random_mask(like, seed=seed) == shuffled


def test_random_mask_differs_across_seeds_and_keeps_exclusions():
    weights = distinct_weights([[8, 8], [16, 4], [10]], seed=0)
    like = magnitude_mask(weights, 0.5, exclude=["layer2.weight"])
    first, second = random_mask(like, seed=1), random_mask(like, seed=2)
    assert first != second and first != like
    assert first.excluded == {"layer2.weight"} and first["layer2.weight"].all()


def test_save_load_round_trip(tmp_path):
    weights = distinct_weights([[4, 3], [6], [2, 2, 2]], seed=3)
    mask = magnitude_mask(weights, 0.75, exclude=["layer1.weight"])
    path = tmp_path / "mask.pt"
    mask.save(path)
    loaded = Mask.load(path)
    assert loaded == mask
    assert list(loaded) == list(weights) and loaded.excluded == {"layer1.weight"}
    assert torch.load(path, weights_only=True)["excluded"] == ["layer1.weight"]


def test_density_counts_only_pruned_tensors():
    mask = Mask({"conv1.weight": torch.ones(10, dtype=torch.bool),
                 "fc.weight": torch.tensor([True, False, False, False])}, frozenset({"conv1.weight"}))
    assert mask.density() == 0.25 and mask.sparsity() == 0.75
    assert mask.kept() == {"conv1.weight": 10, "fc.weight": 1}
    assert mask.layer_density() == {"conv1.weight": 1.0, "fc.weight": 0.25}
    assert mask.pruned_names == ["fc.weight"]
    assert dense_mask({"a.weight": torch.zeros(3)}).density() == 1.0
    assert mask.to("cpu") == mask and mask.to("cpu") is not mask
