"""Properties of the correlation indicator R_p, a hand-computed case, and the mask and sparse-vs-dense rules."""

import math

import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from ltspec.correlation import (check_sparse_dense_p, magnitude_ranks, overlap_by_layer, overlap_of_ranks, overlap_ratio,
                                top_p_indices)

SHAPES = st.lists(st.tuples(st.integers(1, 6), st.integers(1, 12)), min_size=1, max_size=3)
P = st.floats(0.05, 1.0)
SEED = st.integers(0, 2**31 - 1)


def random_weights(shapes, seed, *, ties=False, dtype=torch.float32):
    """Weights for layers of the given shapes; with ties, small signed integers, so equal magnitudes abound."""
    g = torch.Generator().manual_seed(seed)
    draw = (lambda s: torch.randint(-3, 4, s, generator=g).to(dtype)) if ties else (
        lambda s: torch.randn(s, generator=g, dtype=dtype)
    )
    return {f"layer{i}.weight": draw(shape) for i, shape in enumerate(shapes)}


def random_mask(weights, seed):
    g = torch.Generator().manual_seed(seed)
    return {name: torch.rand(w.shape, generator=g) < 0.6 for name, w in weights.items()}


def assume_some_slot(weights, p, mask=None):
    """R_p is undefined when p is too small for every layer to have a top-p weight."""
    kept = [int(w.numel() if mask is None else mask[name].sum()) for name, w in weights.items()]
    assume(sum(round(p * n) for n in kept) > 0)


@settings(max_examples=40, deadline=None)
@given(shapes=SHAPES, seed=SEED, p=P, ties=st.booleans())
def test_same_weights_give_one(shapes, seed, p, ties):
    theta = random_weights(shapes, seed, ties=ties)
    assume_some_slot(theta, p)
    assert overlap_ratio(theta, theta, p) == 1.0


@settings(max_examples=40, deadline=None)
@given(shapes=SHAPES, seeds=st.tuples(SEED, SEED), p=P, ties=st.booleans())
def test_symmetric_and_a_fraction(shapes, seeds, p, ties):
    a, b = (random_weights(shapes, seed, ties=ties) for seed in seeds)
    assume_some_slot(a, p)
    r = overlap_ratio(a, b, p)
    assert r == overlap_ratio(b, a, p)
    assert 0.0 <= r <= 1.0


@settings(max_examples=30, deadline=None)
@given(
    shapes=SHAPES,
    seeds=st.tuples(SEED, SEED, SEED),
    p=P,
    scales=st.lists(st.floats(1e-3, 1e3), min_size=3, max_size=3),
)
def test_unchanged_by_positive_rescaling_and_sign_flips(shapes, seeds, p, scales):
    """float64 weights, so that rounding after a rescale cannot plausibly merge two distinct magnitudes."""
    a, b = (random_weights(shapes, seed, dtype=torch.float64) for seed in seeds[:2])
    assume_some_slot(a, p)
    g = torch.Generator().manual_seed(seeds[2])
    signs = {name: torch.randint(0, 2, w.shape, generator=g) * 2 - 1 for name, w in b.items()}
    b_changed = {name: scale * signs[name] * w for (name, w), scale in zip(b.items(), scales)}
    assert overlap_ratio(a, b_changed, p) == overlap_ratio(a, b, p)


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(200, 3000), min_size=1, max_size=4), seed=SEED, p=P)
def test_independent_weights_give_about_p(sizes, seed, p):
    """Within 5 sigma of the hypergeometric law: two random k-subsets of N share k²/N weights on average."""
    a, b = random_weights([(n,) for n in sizes], seed), random_weights([(n,) for n in sizes], seed + 1)
    ks = [round(p * n) for n in sizes]
    mean = sum(k * k / n for k, n in zip(ks, sizes))
    variance = sum(k * k * (n - k) ** 2 / (n * n * (n - 1)) for k, n in zip(ks, sizes))
    shared = sum(shared for shared, _ in overlap_by_layer(a, b, p).values())
    assert abs(shared - mean) <= 5 * math.sqrt(variance) + 1e-9
    rounding_gap = max(abs(k / n - p) for k, n in zip(ks, sizes))
    assert abs(overlap_ratio(a, b, p) - p) <= 5 * math.sqrt(variance) / sum(ks) + rounding_gap + 1e-9


def test_hand_computed_case():
    """p = 0.3 over a 10-weight conv (k = 3) and a 4-weight linear layer (k = round(1.2) = 1).

    conv, |a| by flat index: .9 .1 .5 .7 .2 0 .3 .8 .4 .6   -> top 3 = {0, 7, 3}
    conv, |b| by flat index: 1 .2 .1 .5 .3 .6 0 .4 .05 .2   -> top 3 = {0, 5, 3}   shared {0, 3}
    fc,   |a|: .5 2 1 0 -> top 1 = {1};  |b|: 3 3 1 0, a tie that goes to the lower index -> {0};  shared {}
    R_p = (2 + 0) / (3 + 1) = 0.5, where the paper's p·ΣN = 4.2 would give 2/4.2.
    """
    a = {
        "conv.weight": torch.tensor([[0.9, -0.1, 0.5, -0.7, 0.2], [0.0, 0.3, -0.8, 0.4, 0.6]]),
        "fc.weight": torch.tensor([[0.5, -2.0, 1.0, 0.0]]),
    }
    b = {
        "conv.weight": torch.tensor([[-1.0, 0.2, 0.1, 0.5, 0.3], [0.6, 0.0, 0.4, 0.05, 0.2]]),
        "fc.weight": torch.tensor([[3.0, -3.0, 1.0, 0.0]]),
    }
    assert top_p_indices(a["conv.weight"], 0.3).tolist() == [0, 7, 3]
    assert top_p_indices(b["conv.weight"], 0.3).tolist() == [0, 5, 3]
    assert top_p_indices(b["fc.weight"], 0.3).tolist() == [0]
    assert overlap_by_layer(a, b, 0.3) == {"conv.weight": (2, 3), "fc.weight": (0, 1)}
    assert overlap_ratio(a, b, 0.3) == 0.5


@settings(max_examples=40, deadline=None)
@given(shapes=SHAPES, seeds=st.tuples(SEED, SEED, SEED), ps=st.lists(P, min_size=1, max_size=6), ties=st.booleans(),
       masked=st.booleans())
def test_one_sort_per_tensor_gives_every_p_the_intersection_of_top_sets(shapes, seeds, ps, ties, masked):
    a, b = random_weights(shapes, seeds[0], ties=ties), random_weights(shapes, seeds[1], ties=ties)
    mask = random_mask(a, seeds[2]) if masked else None
    ranked_a, ranked_b = magnitude_ranks(a, mask), magnitude_ranks(b, mask)
    for p in ps:
        tops = {name: [set(top_p_indices(w[name], p, None if mask is None else mask[name]).tolist()) for w in (a, b)]
                for name in a}
        expected = {name: (len(top_a & top_b), len(top_a)) for name, (top_a, top_b) in tops.items()}
        assert overlap_of_ranks(ranked_a, ranked_b, p) == expected


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 100), seed=SEED, p=P)
@example(n=5, seed=0, p=0.5)
@example(n=45, seed=0, p=0.7)
def test_top_set_matches_a_plain_python_sort(n, seed, p):
    """Largest magnitude first, equal magnitudes in index order, k = Python's round(p * N).

    The examples pin the rounding: 0.5 · 5 = 2.5 rounds to 2 (half to even), and 0.7 · 45 is just below 31.5 in
    float64 (k = 31) but exactly 31.5 in float32 (k = 32).
    """
    w = random_weights([(n,)], seed, ties=True)["layer0.weight"]
    expected = sorted(range(n), key=lambda i: (-abs(w[i].item()), i))[: round(p * n)]
    assert top_p_indices(w, p).tolist() == expected


@settings(max_examples=30, deadline=None)
@given(shape=st.tuples(st.integers(1, 6), st.integers(1, 12)), seeds=st.tuples(SEED, SEED), p=P, ties=st.booleans())
def test_masked_top_set_is_the_top_set_of_the_kept_weights(shape, seeds, p, ties):
    w = random_weights([shape], seeds[0], ties=ties)["layer0.weight"]
    keep = random_mask({"w": w}, seeds[1])["w"]
    kept_indices = keep.flatten().nonzero().squeeze(1)
    expected = kept_indices[top_p_indices(w.flatten()[kept_indices], p)]
    assert top_p_indices(w, p, keep).tolist() == expected.tolist()


@settings(max_examples=30, deadline=None)
@given(shapes=SHAPES, seeds=st.tuples(SEED, SEED, SEED, SEED), p=P)
def test_masked_ratio_ignores_pruned_positions(shapes, seeds, p):
    a, b, junk = (random_weights(shapes, seed) for seed in seeds[:3])
    mask = random_mask(a, seeds[3])
    assume_some_slot(a, p, mask)
    loud_junk = {name: 100 * w for name, w in junk.items()}
    a_junked = {name: torch.where(mask[name], w, loud_junk[name]) for name, w in a.items()}
    b_pruned = {name: w * mask[name] for name, w in b.items()}
    assert overlap_ratio(a_junked, b_pruned, p, mask=mask) == overlap_ratio(a, b, p, mask=mask)
    assert overlap_ratio(a_junked, a, p, mask=mask) == 1.0
    assert all(
        k == round(p * int(mask[name].sum())) for name, (_, k) in overlap_by_layer(a, b, p, mask=mask).items()
    )


def test_layer_missing_from_mask_is_dense_and_extra_mask_entries_are_ignored():
    a, b = random_weights([(4, 5), (3, 3)], 0), random_weights([(4, 5), (3, 3)], 1)
    mask = random_mask(a, 2)
    partial = {"layer1.weight": mask["layer1.weight"], "unmeasured.weight": torch.ones(7, dtype=torch.bool)}
    by_layer = overlap_by_layer(a, b, 0.5, mask=partial)
    assert by_layer["layer0.weight"] == overlap_by_layer(a, b, 0.5)["layer0.weight"]
    assert by_layer["layer1.weight"] == overlap_by_layer(a, b, 0.5, mask=mask)["layer1.weight"]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(10, 200), zeros_fraction=st.floats(0.0, 0.95), seed=SEED, p=P)
def test_sparse_dense_check_keeps_pruned_zeros_out_of_the_top_set(n, zeros_fraction, seed, p):
    """When the check passes, the sparse network's top-p holds only its nonzero weights."""
    zeros = int(zeros_fraction * n)
    assume(zeros < n)
    try:
        check_sparse_dense_p(zeros / n, p)
    except ValueError:
        assert p >= 1 - zeros / n
        return
    w = random_weights([(n,)], seed)["layer0.weight"]
    w[torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:zeros]] = 0.0
    assert (w[top_p_indices(w, p)] != 0).all()


def test_sparse_dense_check_examples():
    check_sparse_dense_p(0.5, 0.4)
    check_sparse_dense_p(0.0, 1.0 - 1e-9)
    for sparsity, p in [(0.5, 0.5), (0.8, 0.2), (0.9, 0.5), (1.0, 0.1), (-0.1, 0.1), (0.5, 0.0)]:
        with pytest.raises(ValueError):
            check_sparse_dense_p(sparsity, p)


def test_rejects_malformed_inputs():
    a, b = random_weights([(2, 3), (4,)], 0), random_weights([(2, 3), (4,)], 1)
    with pytest.raises(ValueError, match="different tensors"):
        overlap_ratio(a, {"layer0.weight": b["layer0.weight"]}, 0.5)
    with pytest.raises(ValueError, match="shapes differ"):
        overlap_ratio(a, {**b, "layer1.weight": torch.zeros(5)}, 0.5)
    with pytest.raises(ValueError, match="bool tensor"):
        overlap_ratio(a, b, 0.5, mask={"layer0.weight": torch.ones(2, 3)})
    with pytest.raises(ValueError, match="bool tensor"):
        top_p_indices(a["layer1.weight"], 0.5, torch.ones(3, dtype=torch.bool))
    for p in [0.0, -0.2, 1.5, float("nan")]:
        with pytest.raises(ValueError, match="p must be"):
            overlap_ratio(a, b, p)
    with pytest.raises(ValueError, match="undefined"):
        overlap_ratio(a, b, 0.01)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_same_counts_as_cpu():
    a, b = random_weights([(64, 27), (10, 64)], 0, ties=True), random_weights([(64, 27), (10, 64)], 1, ties=True)
    mask = random_mask(a, 2)
    on_cuda = {name: w.cuda() for name, w in a.items()}, {name: w.cuda() for name, w in b.items()}
    cuda_mask = {name: m.cuda() for name, m in mask.items()}
    assert overlap_by_layer(*on_cuda, 0.3) == overlap_by_layer(a, b, 0.3)
    assert overlap_by_layer(*on_cuda, 0.3, mask=cuda_mask) == overlap_by_layer(a, b, 0.3, mask=mask)
    top_on_cuda = top_p_indices(on_cuda[0]["layer0.weight"], 0.3, cuda_mask["layer0.weight"])
    assert top_on_cuda.tolist() == top_p_indices(a["layer0.weight"], 0.3, mask["layer0.weight"]).tolist()
