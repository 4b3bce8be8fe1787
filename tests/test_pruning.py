import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils import prune

from ltspec.hooks import Hook
from ltspec.pruning import (EnforceMask, Mask, dense_mask, imp_round, magnitude_mask, random_mask,
                            select_prunable)
from ltspec.recipe import Adam, ConstantSchedule, Recipe, Sgd
from ltspec.training import fit

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


class Written(Hook):
    """Before `EnforceMask` in the hook list: keeps the weights as each optimizer step wrote them."""

    name = "written"

    def __init__(self, params: dict):
        self.params, self.weights, self.pruned_moved = params, {}, False

    def after_step(self) -> None:
        self.weights = {name: param.detach().clone() for name, param in self.params.items()}


class Enforced(Hook):
    """After `EnforceMask`: each step's pruned weights are exactly zero and its kept ones are the optimizer's."""

    name = "enforced"

    def __init__(self, mask: Mask, written: Written):
        self.mask, self.written, self.steps = mask, written, 0

    def after_step(self) -> None:
        for name, param in self.written.params.items():
            kept, step = self.mask[name], self.written.weights[name]
            assert not param[~kept].any(), f"{name}: a pruned weight is not zero after step {self.steps + 1}"
            assert torch.equal(param[kept], step[kept])
            self.written.pruned_moved |= bool(step[~kept].any())
        self.steps += 1


@settings(max_examples=12, deadline=None)
@given(kind=st.sampled_from(["sgd", "adam", "adamw"]), nesterov=st.booleans(), seed=any_seed,
       sparsity=st.floats(0.1, 0.95), epochs=st.integers(1, 3), lr=st.floats(1e-3, 0.5),
       weight_decay=st.sampled_from([5e-4, 0.1]))
def test_enforce_mask_keeps_pruned_weights_exactly_zero_after_every_step_of_fit(kind, nesterov, seed, sparsity,
                                                                                 epochs, lr, weight_decay):
    """ltspec's own hook in ltspec's own loop (`fit`), with momentum and weight decay, which move a pruned weight
    off zero at every step (checked: the optimizer did write there), and at every forward pass too."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    weights = {name: param for name, param in model.named_parameters() if name.endswith("weight")}
    mask = magnitude_mask({name: param.detach() for name, param in weights.items()}, sparsity)
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.randn(40, 6, generator=generator), torch.randint(3, (40,), generator=generator)
    zero_at_forward = []
    model.register_forward_pre_hook(lambda module, inputs: zero_at_forward.append(
        all(not param[~mask[name]].any() for name, param in weights.items())))
    written = Written(weights)
    enforced = Enforced(mask, written)
    optimizer = (Sgd(momentum=0.9, nesterov=nesterov, weight_decay=weight_decay) if kind == "sgd"
                 else Adam(kind=kind, weight_decay=weight_decay))
    recipe = Recipe(epochs, lr, optimizer, ConstantSchedule(kind="constant"))
    fit(model, lambda epoch: zip(x.split(8), y.split(8)), {}, recipe, steps_per_epoch=5,
        hooks=[written, EnforceMask(mask, model), enforced])
    assert enforced.steps == 5 * epochs and len(zero_at_forward) == 5 * epochs and all(zero_at_forward)
    assert written.pruned_moved, "the optimizer never wrote a pruned weight: the property was not tried"


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
