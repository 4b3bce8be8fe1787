"""The analyses beyond the paper: linear interpolation and instability (Frankle et al., ICML 2020), as science
functions, as plans, and as specs."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from conftest import QUICKSTART
from ltspec.interpolation import alphas, error_barrier, interpolate, recompute_batch_norm
from ltspec.kinds import interpolate as interpolate_kind
from ltspec.kinds import train
from ltspec.plan import compile_plan
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
