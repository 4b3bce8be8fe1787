"""The analyses beyond the paper: linear interpolation and instability (Frankle et al., ICML 2020), as science
functions, as plans, and as specs."""

import math
from itertools import combinations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from conftest import QUICKSTART
from ltspec.interpolation import error_barrier, interpolate, recompute_batch_norm
from ltspec.kinds import interpolate as interpolate_kind
from ltspec.kinds import train
from ltspec.plan import compile_plan
from ltspec.points import alphas
from ltspec.pruning import Mask, erk_counts, random_mask, shuffle_mask
from ltspec.signs import signs_with_constant, signs_with_magnitudes
from ltspec.similarity import overlap
from ltspec.spec import SpecError, load_spec

FINITE = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@st.composite
def networks(draw):
    """Two states of one network: a few float tensors of one shape each, and an integer buffer."""
    shapes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3))
    a, b = {}, {}
    for index, size in enumerate(shapes):
        a[f"w{index}"] = torch.tensor(draw(st.lists(FINITE, min_size=size, max_size=size)))
        b[f"w{index}"] = torch.tensor(draw(st.lists(FINITE, min_size=size, max_size=size)))
    a["count"], b["count"] = torch.tensor(draw(st.integers(0, 9))), torch.tensor(draw(st.integers(0, 9)))
    return a, b


def same(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[name], second[name]) for name in first)


@given(networks())
def test_the_path_starts_and_ends_exactly_at_its_ends(pair):
    a, b = pair
    assert same(interpolate(a, b, 0.0), a)
    assert same(interpolate(a, b, 1.0), {**b, "count": a["count"]})


@given(networks(), st.floats(0.0, 1.0))
def test_a_network_interpolated_with_itself_stays_itself(pair, alpha):
    a, _ = pair
    assert same(interpolate(a, a, alpha), a)


@given(st.integers(2, 101))
def test_alphas_are_evenly_spaced_with_exact_ends(count):
    found = alphas(count)
    assert len(found) == count and found[0] == 0.0 and found[-1] == 1.0
    assert all(math.isclose(later - earlier, 1 / (count - 1)) for earlier, later in zip(found, found[1:]))


@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=20))
def test_the_barrier_is_never_negative_and_zero_on_a_flat_path(errors):
    assert error_barrier(errors) >= 0.0
    assert error_barrier([errors[0]] * len(errors)) == 0.0


def test_recomputed_batch_norm_statistics_are_those_of_the_data():
    """Equal batches: the cumulative average of the batch statistics is the statistic of all the data (the
    variance unbiased per batch, as batch norm keeps it)."""
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    network[1].running_mean.fill_(7.0)
    batches = [(torch.randn(16, 3), torch.zeros(16, dtype=torch.long)) for _ in range(5)]
    recompute_batch_norm(network, batches)
    with torch.no_grad():
        hidden = [network[0](x) for x, _ in batches]
    assert not network.training and network[1].momentum == 0.1
    torch.testing.assert_close(network[1].running_mean, torch.cat(hidden).mean(0))
    torch.testing.assert_close(network[1].running_var, torch.stack([h.var(0) for h in hidden]).mean(0))


# The plan


def analysed(tmp_path, extra: str):
    text = QUICKSTART.read_text() + extra
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return compile_plan(load_spec(path))


INSTABILITY = """
[interpolation]
pairs = [["lottery", "trained*mask"], ["init", "trained"]]
points = 5

[instability]
arms = ["lottery"]
copies = 2
"""


def test_copies_and_interpolations_are_stages_of_their_own_and_move_no_other_key(tmp_path):
    plain, analysed_plan = compile_plan(load_spec(QUICKSTART)), analysed(tmp_path, INSTABILITY)
    before = {stage.key for stage in plain.stages}
    added = [stage for stage in analysed_plan.stages if stage.key not in before]
    assert before <= {stage.key for stage in analysed_plan.stages}
    copies = [stage for stage in added if stage.kind == train.KIND]
    masks = {stage.parents[1] for stage in copies}
    assert len(copies) == 2 * len(masks)
    seeds = {(stage.parents, stage.config.data_seed) for stage in copies}
    assert len(seeds) == len(copies) and all(stage.config.data_seed != stage.config.seed for stage in copies)
    paths = [stage for stage in added if stage.kind == interpolate_kind.KIND]
    instability = [stage for stage in paths if stage.labels["analysis"] == "instability"]
    assert len(instability) == len(copies)
    for stage in instability:
        arm, copy = stage.config.pair
        assert copy == interpolate_kind.copy_term(arm, stage.labels["copy"])
        assert set(stage.config.results.values()) <= set(stage.parents)
    dense = [stage for stage in paths if len(stage.parents) == 1]
    assert len(dense) == len(plain.trunks) and all(stage.config.points == 5 for stage in paths)


@pytest.mark.parametrize("extra, where, words", [
    ('[instability]\narms = ["lotery"]\n', "instability.arms[0]", "did you mean `lottery`"),
    ('[interpolation]\npairs = [["lottery", "trianed*mask"]]\n', "interpolation.pairs[0][1]", "is not a weight set"),
    ('[interpolation]\npoints = 1\n', "interpolation.points", "must be at least 2"),
    ('[interpolation]\nbatch_norm = "reset"\n', "interpolation.batch_norm", "recompute"),
])
def test_a_bad_analysis_is_a_spec_error_at_its_field(tmp_path, extra, where, words):
    with pytest.raises(SpecError) as error:
        analysed(tmp_path, extra)
    assert where in str(error.value) and words in str(error.value)


# Mask similarity, the shuffle control, ERK and the sign-keeping starts


@st.composite
def masks(draw, count: int = 2, excluded: bool = True):
    """`count` masks of one network of one to three tensors (the first maybe excluded, so kept whole)."""
    sizes = draw(st.lists(st.integers(1, 40), min_size=1, max_size=3))
    shut = frozenset({"t0"}) if excluded and draw(st.booleans()) else frozenset()
    drawn = []
    for _ in range(count):
        tensors = {f"t{index}": torch.tensor(draw(st.lists(st.booleans(), min_size=size, max_size=size)))
                   for index, size in enumerate(sizes)}
        drawn.append(Mask({name: kept | (name in shut) for name, kept in tensors.items()}, shut))
    return drawn


@given(masks())
def test_jaccard_and_hamming_are_symmetric_and_a_mask_is_its_own_twin(pair):
    a, b = pair
    forth, back = overlap(a, b), overlap(b, a)
    assert forth.jaccard == back.jaccard and forth.hamming == back.hamming
    assert forth.chance_jaccard == pytest.approx(back.chance_jaccard)
    itself = overlap(a, a)
    assert itself.jaccard == 1.0 and itself.hamming == 0.0
    assert 0.0 <= forth.jaccard <= 1.0 and 0.0 <= forth.hamming <= 1.0


@settings(max_examples=30)
@given(st.integers(1, 6), st.data())
def test_the_chance_overlap_is_the_mean_over_every_pair_of_random_masks(size, data):
    """Every mask keeping a of n weights against every mask keeping b: the mean shared count is a·b/n exactly."""
    a, b = data.draw(st.integers(0, size)), data.draw(st.integers(0, size))
    first = [torch.tensor([index in chosen for index in range(size)]) for chosen in combinations(range(size), a)]
    second = [torch.tensor([index in chosen for index in range(size)]) for chosen in combinations(range(size), b)]
    shared = [overlap(Mask({"w": x}), Mask({"w": y})) for x in first for y in second]
    assert sum(found.both for found in shared) / len(shared) == pytest.approx(shared[0].chance_both, abs=1e-12)


def test_the_jaccard_of_random_masks_averages_to_its_chance_value():
    like = Mask({"a": torch.zeros(300, dtype=torch.bool), "b": torch.zeros(40, 20, dtype=torch.bool)})
    counts = {"a": 90, "b": 500}
    found = [overlap(random_mask(like, seed, counts), random_mask(like, seed + 1000, counts)) for seed in range(200)]
    mean = sum(item.jaccard for item in found) / len(found)
    spread = torch.tensor([item.jaccard for item in found]).std().item() / len(found) ** 0.5
    assert abs(mean - found[0].chance_jaccard) < 4 * spread + 1e-3, (mean, found[0].chance_jaccard)


@given(masks(count=1), st.integers(0, 2**31))
def test_a_shuffled_mask_keeps_every_layer_count_and_exclusion_and_moves(drawn, seed):
    mask = drawn[0]
    shuffled = shuffle_mask(mask, seed)
    assert shuffled.kept() == mask.kept() and shuffled.excluded == mask.excluded
    assert all(bool(shuffled[name].all()) for name in mask.excluded)
    movable = any(0 < count < mask[name].numel() for name, count in mask.kept().items() if name not in mask.excluded)
    assert (shuffled != mask) == movable
    assert shuffle_mask(mask, seed) == shuffled


@given(st.lists(st.lists(st.integers(1, 12), min_size=2, max_size=4), min_size=1, max_size=5),
       st.floats(0.0, 1.0), st.data())
def test_erk_counts_sum_to_the_target_and_fit_their_tensors(shapes, sparsity, data):
    named = {f"t{index}": tuple(shape) for index, shape in enumerate(shapes)}
    excluded = {name for name in named if data.draw(st.booleans())} - {"t0"}
    counts = erk_counts(named, sparsity, excluded)
    pruned = [name for name in named if name not in excluded]
    total = sum(math.prod(named[name]) for name in pruned)
    assert sum(counts[name] for name in pruned) == total - round(sparsity * total)
    assert all(0 <= counts[name] <= math.prod(named[name]) for name in named)
    assert all(counts[name] == math.prod(named[name]) for name in excluded)


def test_erk_gives_the_denser_share_to_the_layer_with_fewer_weights_per_unit():
    counts = erk_counts({"wide": (256, 256), "narrow": (10, 256)}, 0.9)
    assert counts["narrow"] / 2560 > counts["wide"] / 65536


@given(st.lists(FINITE.filter(bool), min_size=2, max_size=30), st.data())
def test_a_sign_keeping_start_has_theta0s_signs_on_every_kept_weight_and_zeros_elsewhere(values, data):
    size = len(values)
    init = {"w": torch.tensor(values), "b": torch.tensor([0.5])}
    fresh = {"w": torch.tensor(data.draw(st.lists(FINITE.filter(bool), min_size=size, max_size=size))),
             "b": torch.tensor([2.0])}
    kept = torch.tensor(data.draw(st.lists(st.booleans(), min_size=size, max_size=size)))
    for start in (signs_with_magnitudes(init, fresh, ["w"]), signs_with_constant(init, ["w"])):
        Mask({"w": kept}).apply_(start)
        assert torch.equal(torch.sign(start["w"][kept]), torch.sign(init["w"][kept]))
        assert not start["w"][~kept].any() and torch.equal(start["b"], init["b"])
    assert torch.equal(signs_with_magnitudes(init, fresh, ["w"])["w"].abs(), fresh["w"].abs())
    assert len(set(signs_with_constant(init, ["w"])["w"].abs().tolist())) == 1


SHUFFLED = """
[masks.shuffled]
kind = "shuffle"
of = "{of}"
"""


@pytest.mark.parametrize("of, words", [
    ("imq", "did you mean `imp`"),
    ("shuffled", "cannot be made from its own masks"),
])
def test_a_shuffle_names_another_table(tmp_path, of, words):
    with pytest.raises(SpecError) as error:
        analysed(tmp_path, SHUFFLED.format(of=of))
    assert "masks.shuffled.of" in str(error.value) and words in str(error.value)


def test_tables_made_from_each_other_are_a_circle(tmp_path):
    with pytest.raises(SpecError, match=r"made from each other's masks: a -> b -> a"):
        analysed(tmp_path, SHUFFLED.format(of="imp").replace("shuffled", "a").replace('"imp"', '"b"')
                 + SHUFFLED.format(of="a").replace("shuffled", "b"))


def test_a_shuffle_written_first_is_expanded_after_its_source_and_keeps_its_rounds(tmp_path):
    text = QUICKSTART.read_text().replace("[masks.imp]", SHUFFLED.format(of="imp") + "\n[masks.imp]")
    path = tmp_path / "spec.toml"
    path.write_text(text)
    plan = compile_plan(load_spec(path))
    masks_by_key = {stage.key: stage for stage in plan.stages if stage.kind.name == "mask"}
    shuffled = [stage for stage in masks_by_key.values() if stage.labels["generator"] == "shuffled"]
    assert len(shuffled) == 3 * len(plan.trunks)
    for stage in shuffled:
        source = masks_by_key[stage.parents[0]]
        assert source.labels["generator"] == "imp" and source.labels["round"] == stage.labels["round"]
    assert {stage.key for stage in compile_plan(load_spec(QUICKSTART)).stages} <= {stage.key for stage in plan.stages}


OVERLAP = """
[masks.gradual]
kind = "gradual"
sparsities = [0.75]
epochs = 3
lr = 0.01

[mask_overlap]
compare = ["generators", "seeds", "rounds"]
"""


def test_mask_comparisons_follow_the_tables_the_seeds_and_the_runs(tmp_path):
    plan = analysed(tmp_path, OVERLAP)
    compared = [stage for stage in plan.stages if stage.kind.name == "compare"]
    by = {what: [stage for stage in compared if stage.labels["comparison"] == what]
          for what in ("generators", "seeds", "rounds")}
    trunks = len(plan.trunks)
    # imp, oneshot and gradual share 75%, imp and oneshot 87.5%: four pairs per trunk
    assert len(by["generators"]) == 4 * trunks
    assert {(stage.labels["a"], stage.labels["b"], stage.labels["sparsity"]) for stage in by["generators"]} == {
        ("imp", "oneshot", 0.75), ("imp", "gradual", 0.75), ("oneshot", "gradual", 0.75), ("imp", "oneshot", 0.875)}
    # two seeds per point: one pair for each of the 3 + 2 + 1 masks
    assert len(by["seeds"]) == 6 * trunks // 2
    assert all(plan.stage(stage.parents[0]).labels["seed"] == 0 and plan.stage(stage.parents[1]).labels["seed"] == 1
               for stage in by["seeds"])
    runs = {stage.labels["generator"]: stage for stage in by["rounds"]}
    assert len(by["rounds"]) == 2 * trunks and set(runs) == {"imp", "gradual"}
    assert [what for _, what in runs["imp"].config.masks] == ["trained", "final", "final"]
    assert runs["imp"].config.drawn.sparsity == 0.875
    assert [what for _, what in runs["gradual"].config.masks] == ["mask@0", "mask@1", "mask@2", "mask@3"]
    assert plan.stage(runs["gradual"].parents[0]).runtime["snapshots"] is True
    unasked = compile_plan(load_spec(QUICKSTART))
    assert {stage.key for stage in unasked.stages} <= {stage.key for stage in plan.stages}


def test_a_comparison_with_nothing_to_compare_is_a_spec_error(tmp_path):
    text = '[mask_overlap]\ncompare = ["rounds", "generators"]\n'
    path = tmp_path / "spec.toml"
    path.write_text(QUICKSTART.read_text().replace("rounds = 3", "rounds = 1").replace("0.75, 0.875", "0.8") + text)
    with pytest.raises(SpecError) as error:
        load_spec(path)
    assert "mask_overlap.compare[0]: no [masks] table prunes in steps" in str(error.value)
    assert "mask_overlap.compare[1]: no two [masks] tables make masks at the same sparsity" in str(error.value)
