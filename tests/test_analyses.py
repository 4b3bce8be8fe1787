"""The analyses beyond the paper: linear interpolation and instability (Frankle et al., ICML 2020), as science
functions, as plans, and as specs."""

import io
import math
import shutil
import subprocess
import sys
import time
from itertools import combinations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient
from rich.console import Console
from torch import nn

from conftest import QUICKSTART, default_signals, write_spec, write_tiny_spec
from ltspec.interpolation import error_barrier, interpolate, recompute_batch_norm
from ltspec.kinds import interpolate as interpolate_kind
from ltspec.kinds import train
from ltspec.plan import compile_plan
from ltspec.report import write_report
from ltspec.runners.local import run_local
from ltspec.store import Store
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

    only_imp = analysed(tmp_path, INSTABILITY.replace("copies = 2", 'copies = 2\nmasks = ["imp"]'))
    copied = {stage.labels["generator"] for stage in only_imp.stages if stage.labels.get("copy")}
    assert copied == {"imp"}


@pytest.mark.parametrize("extra, where, words", [
    ('[instability]\narms = ["lotery"]\n', "instability.arms[0]", "did you mean `lottery`"),
    ('[interpolation]\npairs = [["lottery", "trianed*mask"]]\n', "interpolation.pairs[0][1]", "is not a weight set"),
    ('[interpolation]\npoints = 1\n', "interpolation.points", "must be at least 2"),
    ('[interpolation]\nbatch_norm = "reset"\n', "interpolation.batch_norm", "recompute"),
    ('[instability]\narms = ["lottery"]\nmasks = ["imb"]\n', "instability.masks[0]", "did you mean `imp`"),
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


# End to end, on the digits: every analysis run, logged and reported


RUN_SPEC = """\
name = "analyses-test"
seeds = [0, 1]

[data]
dataset = "digits"
batch_size = 128

[model]
arch = "convnet"
width = 0.25

[train]
epochs = 2
lr = 0.05
schedule = {{ kind = "constant" }}

[masks.imp]
kind = "imp"
rate = 0.5
rounds = 2

[masks.shuffled]
kind = "shuffle"
of = "imp"

[masks.erk]
kind = "random"
distribution = "erk"
sparsities = [0.75]

[masks.gmp]
kind = "gradual"
sparsities = [0.75]
epochs = 2
frequency = 4

[arms]
lottery = {{ start = "init" }}
signs = {{ start = "signs-constant" }}

[interpolation]
pairs = [["lottery", "lottery"], ["lottery", "trained*mask"]]
points = 5
masks = ["imp"]

[instability]
arms = ["lottery"]
masks = ["imp"]

[mask_overlap]
compare = ["generators", "seeds", "rounds"]

[sweep]
"interpolation.batch_norm" = ["interpolate", "recompute"]

[report]
layouts = ["lmc", "instability", "mask-overlap", "ablations"]

[tracking]
uri = "sqlite:///{folder}/mlflow.db"

[storage]
root = "{folder}/store"
checkpoint_seconds = 0
"""


@pytest.fixture(scope="module")
def analyses_run(tmp_path_factory):
    """The spec above run once by the local runner, logged to MLflow: (folder, loaded spec, plan, store)."""
    folder = tmp_path_factory.mktemp("analyses")
    loaded = load_spec(write_spec(folder, RUN_SPEC))
    plan = compile_plan(loaded)
    summary = run_local(loaded, plan, device="cpu", console=Console(file=io.StringIO()))
    assert summary.ok, summary.failed
    return folder, loaded, plan, Store(folder / "store")


def records(plan, store, kind_name: str) -> list[tuple]:
    return [(stage, store.record(stage.key)) for stage in plan.stages if stage.kind.name == kind_name]


@pytest.mark.slow
def test_a_path_ends_exactly_at_its_ends_and_a_point_with_itself_has_no_barrier(analyses_run):
    _, _, plan, store = analyses_run
    for stage, record in records(plan, store, "interpolate"):
        assert [step for step, _ in record["history"]] == list(range(stage.config.points))
        if stage.config.pair == ("lottery", "lottery"):
            assert record["metrics"]["barrier"] == 0.0 and record["metrics"]["loss_barrier"] == 0.0
        if stage.config.batch_norm == "interpolate":
            ends = [store.record(stage.config.results[term])["metrics"] if term in stage.config.results else None
                    for term in stage.config.pair]
            assert record["metrics"]["error_start"] == 1.0 - ends[0]["final_test_accuracy"]
            if ends[1] is not None:
                assert record["metrics"]["error_end"] == 1.0 - ends[1]["final_test_accuracy"]
        assert record["metrics"]["barrier"] >= 0.0


@pytest.mark.slow
def test_a_copy_trains_on_its_own_data_order_from_the_arms_start(analyses_run):
    _, _, plan, store = analyses_run
    for stage, record in records(plan, store, "train"):
        if stage.labels.get("copy"):
            arm = next(other for other in plan.stages if other.kind == train.KIND and other.parents == stage.parents
                       and other.labels.get("arm") == "lottery" and not other.labels.get("copy"))
            assert record["history"] != store.record(arm.key)["history"]
            assert record["metrics"]["sparsity"] == store.record(arm.key)["metrics"]["sparsity"]


@pytest.mark.slow
def test_compared_masks_are_what_their_stored_masks_say(analyses_run):
    _, _, plan, store = analyses_run
    masks_by_key = {stage.key: stage for stage in plan.stages if stage.kind.name == "mask"}
    for stage, record in records(plan, store, "compare"):
        if stage.labels["comparison"] == "rounds":
            steps = len(stage.config.masks) - 1
            assert sorted(step for step, _ in record["history"]) == list(range(1, steps + 1))
            if stage.config.masks[0][1] == "mask@0":  # gradual: its last snapshot is its mask
                last = Mask(store.read_tensors(stage.parents[0], f"mask@{steps}"), frozenset())
                assert Mask(store.read_tensors(stage.parents[0], "mask"), frozenset()) == last
            continue
        a, b = (Mask(store.read_tensors(key, "mask"), frozenset(store.read_json(key, "mask_excluded")))
                for key in stage.parents)
        assert record["metrics"]["jaccard/1"] == overlap(a, b).jaccard
        if masks_by_key[stage.parents[1]].labels["generator"] == "shuffled" and stage.labels.get("a") == "imp":
            assert a.kept() == b.kept() and a != b
        if {stage.labels.get("a"), stage.labels.get("b")} == {"shuffled", "erk"}:  # independent draws: chance
            assert abs(record["metrics"]["jaccard/1"] - record["metrics"]["jaccard_chance/1"]) < 0.05


@pytest.mark.slow
def test_the_alpha_series_is_logged_as_steps_and_every_stage_once(analyses_run):
    folder, _, plan, _ = analyses_run
    client = MlflowClient(tracking_uri=f"sqlite:///{folder}/mlflow.db")
    experiment = client.get_experiment_by_name("analyses-test").experiment_id
    runs = client.search_runs([experiment], "tags.`ltspec.role` = 'stage'", max_results=5000)
    assert sorted(run.data.tags["ltspec.stage_key"] for run in runs) == sorted(stage.key for stage in plan.stages)
    path = next(run for run in runs if run.data.tags["ltspec.kind"] == "interpolate")
    history = client.get_metric_history(path.info.run_id, "test_error")
    assert [metric.step for metric in history] == list(range(5))
    assert {"barrier", "loss_barrier", "test_error/alpha0.5"} <= set(path.data.metrics)
    compared = next(run for run in runs if run.data.tags.get("ltspec.comparison") == "generators")
    assert {"jaccard/1", "hamming/1", "jaccard_chance/1"} <= set(compared.data.metrics)


@pytest.mark.slow
def test_the_report_writes_the_four_layouts(analyses_run):
    folder, loaded, _, _ = analyses_run
    out = folder / "report"
    assert write_report(loaded, out_dir=out, console=Console(file=io.StringIO())) == 0
    written = {path.name for path in out.iterdir()}
    for name in ("lmc-imp", "lmc-path-imp", "instability-imp", "mask-overlap-generators", "mask-overlap-seeds",
                 "mask-overlap-rounds-imp", "mask-overlap-rounds-gmp", "ablations-imp"):
        assert {f"{name}.md", f"{name}.tex", f"{name}.csv", f"{name}.png"} <= written, name
    assert "mask-overlap-generators-chance.md" in written and "mask-overlap-generators-chance.png" not in written
    ablations = (out / "ablations-imp.md").read_text()
    assert "lottery · shuffled" in ablations and "signs" in ablations and "lottery · erk" in ablations
    assert "—" not in (out / "instability-imp.md").read_text()


# The tiny spec: one oneshot mask whose lottery arm trains 30 epochs, and that arm's instability (a copy)
KILLED = {"name": "killed-copy", "batch_size": 256, "augmentation": "none", "epochs": 1, "train": "",
          "masks": '[masks.oneshot]\nkind = "oneshot"\nsparsities = [0.5]\n',
          "arms": 'lottery = { start = "init", epochs = 30 }', "measure": "",
          "resources": '[instability]\narms = ["lottery"]\n'}


@pytest.mark.slow
def test_a_copy_killed_mid_training_resumes_to_the_result_of_an_uninterrupted_run(tmp_path):
    spec = write_tiny_spec(tmp_path, **KILLED)
    plan = compile_plan(load_spec(spec))
    copy = next(stage for stage in plan.stages if stage.labels.get("copy"))
    store = Store(tmp_path / "store")
    command = default_signals([sys.executable, "-m", "ltspec", "run", str(spec), "--device", "cpu"])
    victim = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = store.stage_dir(copy.key) / "checkpoint.pt"
    while not checkpoint.exists() and victim.poll() is None:
        time.sleep(0.05)
    victim.kill()
    victim.wait()
    assert checkpoint.exists() and not store.is_complete(copy.key), "the copy was not caught mid-training"
    assert subprocess.run(command, cwd=tmp_path, capture_output=True).returncode == 0
    resumed = store.record(copy.key)
    shutil.rmtree(store.stage_dir(copy.key))  # and again, uninterrupted, in this process
    assert run_local(load_spec(spec), plan, device="cpu", track=False, console=Console(file=io.StringIO())).ok
    assert store.record(copy.key)["history"] == resumed["history"]
    assert store.record(copy.key)["metrics"] == resumed["metrics"]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("killed-copy").experiment_id
    run = client.search_runs([experiment], f"tags.`ltspec.stage_key` = '{copy.key}'")[0]
    steps = [metric.step for metric in client.get_metric_history(run.info.run_id, "train_loss")]
    assert steps == list(range(1, 31)), "an epoch was logged twice or not at all"


def test_the_plan_tree_shows_every_stage_of_the_analyses_once():
    """A comparison along IMP's run hangs from tickets, not from a mask: the tree puts it under its trunk."""
    from ltspec.plan.render import plan_tree

    plan = compile_plan(load_spec(QUICKSTART.parent / "analyses.toml"))
    console = Console(file=io.StringIO(), width=300)
    console.print(plan_tree(plan, set()))
    text = console.file.getvalue()
    assert all(text.count(stage.key[:10]) == 1 for stage in plan.stages)


# The tiny spec with one GMP mask and no arms, without and with the comparison of its consecutive updates
GRADUAL = {"name": "gradual-run", "batch_size": 256, "augmentation": "none", "epochs": 1, "train": "",
           "masks": '[masks.gmp]\nkind = "gradual"\nsparsities = [0.5]\nepochs = 2\nfrequency = 2\n', "arms": "",
           "measure": ""}


@pytest.mark.slow
def test_a_gradual_run_made_without_snapshots_fails_its_comparison_with_the_folder_to_delete(tmp_path):
    quiet = Console(file=io.StringIO())
    first = load_spec(write_tiny_spec(tmp_path, "first.toml", **GRADUAL))
    assert run_local(first, compile_plan(first), device="cpu", track=False, console=quiet).ok
    second = load_spec(write_tiny_spec(tmp_path, "second.toml", **GRADUAL,
                                       resources='[mask_overlap]\ncompare = ["rounds"]\n'))
    plan = compile_plan(second)
    summary = run_local(second, plan, device="cpu", track=False, console=quiet)
    mask = next(stage for stage in plan.stages if stage.kind.name == "mask")
    assert list(summary.failed) == [stage.key for stage in plan.comparisons]
    assert str(Store(tmp_path / "store").stage_dir(mask.key)) in next(iter(summary.failed.values()))
    shutil.rmtree(Store(tmp_path / "store").stage_dir(mask.key))
    assert run_local(second, plan, device="cpu", track=False, console=quiet).ok
