"""The rehearsal (`ltspec.rehearsal`): the same plan at toy scale, stand-in data, its own store and experiment."""

import itertools

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import QUICKSTART, ROOT, ltspec, write_spec
from ltspec import datasets
from ltspec.data import load_dataset
from ltspec.plan import compile_plan
from ltspec.plan.combine import combine
from ltspec.rehearsal import MIN_EPOCHS, EpochScale, epoch_values, marked, rehearse
from ltspec.strict import EPOCHS, WEIGHT_POINTS
from ltspec.spec import SpecError, load_spec
from ltspec.spec.load import expand

PAPER = sorted((ROOT / "specs" / "paper").glob("*.toml"))


def absent(name: str, root: str) -> bool:
    return False


def shape(plan) -> list[tuple]:
    """A plan without its keys: each stage's kind, whether it trains, and its parents by position."""
    position = {stage.key: index for index, stage in enumerate(plan.stages)}
    return [(stage.kind, stage.epochs > 0, tuple(position[parent] for parent in stage.parents))
            for stage in plan.stages]


@pytest.mark.parametrize("path", [*PAPER, QUICKSTART], ids=lambda path: path.stem)
def test_a_rehearsed_plan_has_the_stages_and_edges_of_the_real_one(path):
    real = load_spec(path)
    rehearsed = rehearse(real, absent).loaded
    real_plan, rehearsed_plan = compile_plan(real), compile_plan(rehearsed)
    assert shape(rehearsed_plan) == shape(real_plan)
    assert not {stage.key for stage in real_plan.stages} & {stage.key for stage in rehearsed_plan.stages}
    assert [arm.equal_budget for arm in rehearsed_plan.arms] == [arm.equal_budget for arm in real_plan.arms]
    assert rehearsed_plan.epochs < real_plan.epochs
    assert max(stage.epochs for stage in rehearsed_plan.stages) == MIN_EPOCHS
    spec = rehearsed.spec
    assert spec.name == real.spec.name + "-rehearsal"
    assert spec.tracking.experiment == (real.spec.tracking.experiment or real.spec.name) + " (rehearsal)"
    assert spec.storage.root == real.spec.storage.root + "/rehearsal"
    assert rehearsed.rehearsal and not real.rehearsal
    assert {point.spec.data.dataset for point in rehearsed.points} == \
        {point.spec.data.dataset + "-synthetic" for point in real.points}


def test_the_paper_rehearsed_shares_its_dense_runs_across_specs_as_the_real_paper_does():
    real = [compile_plan(load_spec(path)) for path in PAPER]
    rehearsed = [compile_plan(rehearse(load_spec(path), absent).loaded) for path in PAPER]
    real_all, rehearsed_all = combine(real, "paper"), combine(rehearsed, "rehearsal")
    assert len(rehearsed_all.plan.stages) == len(real_all.plan.stages) == 5235
    assert len(rehearsed_all.plan.trunks) == len(real_all.plan.trunks) == 60


def test_the_paper_epochs_map_to_six_in_order():
    scale = EpochScale.of([10, 30, 80, 120, 150])
    assert [scale(epoch) for epoch in (0, 10, 30, 80, 120, 150)] == [0, 1, 2, 4, 5, 6]
    crowded = EpochScale.of([148, 149, 150])
    assert [crowded(epoch) for epoch in (148, 149, 150)] == [6, 7, 8]  # raised to stay apart


SPEC = """\
name = "epochs"
[data]
dataset = "cifar10"
[model]
arch = "resnet20"
[train]
epochs = {epochs}
lr = 0.1
schedule = {{ kind = "step", milestones = {milestones}, warmup_epochs = {warmup} }}
[masks.imp]
kind = "imp"
rounds = 2
reset = "{reset}"
[masks.admm]
kind = "admm"
sparsities = [0.5]
epochs = {admm}
update_every = {update_every}
[masks.gradual]
kind = "gradual"
sparsities = [0.5]
epochs = {gradual}
start_epoch = {start}
end_epoch = {end}
frequency = {frequency}
[arms]
rewind = {{ start = "{arm_start}" }}
short = {{ start = "init", epochs = {arm_epochs} }}
[measure]
pairs = [["init", "trained"], ["{pair}", "trained"]]
"""


@st.composite
def epoch_settings(draw) -> dict:
    epochs = draw(st.integers(2, 400))
    inside = st.integers(1, epochs - 1)
    gradual = draw(st.integers(1, 400))
    start = draw(st.integers(0, gradual - 1))
    return dict(epochs=epochs, milestones=sorted(draw(st.sets(inside, max_size=4))),
                warmup=draw(st.integers(0, epochs - 1)), reset=f"rewind@{draw(inside)}",
                admm=draw(st.integers(1, 400)), update_every=draw(st.integers(1, 5000)), gradual=gradual, start=start,
                end=draw(st.integers(start + 1, gradual)), frequency=draw(st.integers(1, 5000)),
                arm_start=f"rewind@{draw(inside)}", arm_epochs=draw(st.integers(1, 400)),
                pair=draw(st.sampled_from(["init", f"rewind@{draw(inside)}"])))


def epoch_leaves(spec) -> list[int]:
    """Every epoch a spec names, in the order of its settings."""
    leaves = []
    for _, value, unit in marked(spec):
        for item in (value if isinstance(value, list | tuple) else [value]):
            for term in (item if isinstance(item, tuple) else [item]):
                if unit is EPOCHS and term is not None:
                    leaves.append(term)
                elif unit is WEIGHT_POINTS and term.startswith("rewind@"):
                    leaves.append(int(term.removeprefix("rewind@").removesuffix("*mask")))
    return leaves


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(epoch_settings())
def test_every_epoch_setting_keeps_its_order_and_its_place_in_the_run(values):
    data = __import__("tomllib").loads(SPEC.format(**values))
    try:
        real = expand(data)
    except SpecError:
        assume(False)
    rehearsed = rehearse(real, absent).loaded  # validated: milestones, warmup, rewinds and windows inside their runs
    before, after = epoch_leaves(real.spec), epoch_leaves(rehearsed.spec)
    assert len(before) == len(after)
    for (a, b), (a2, b2) in zip(itertools.combinations(before, 2), itertools.combinations(after, 2)):
        assert (a < b, a == b) == (a2 < b2, a2 == b2)
    assert all(0 <= new <= old for old, new in zip(before, after))
    assert max(after) <= MIN_EPOCHS + len(epoch_values([real.spec])) - 1
    assert shape(compile_plan(rehearsed)) == shape(compile_plan(real))
    gradual, admm = rehearsed.spec.masks["gradual"], rehearsed.spec.masks["admm"]
    assert 1 <= gradual.frequency <= values["frequency"] and 1 <= admm.update_every <= values["update_every"]


def test_swept_batch_sizes_and_validation_splits_stay_apart_and_fit_the_stand_in(tmp_path):
    spec = write_spec(tmp_path, QUICK + '''[sweep]
"data.batch_size" = [256, 64, 128]
"data.validation_split" = [0.0, 0.02, 0.05]
''')
    real = load_spec(spec)
    rehearsed = rehearse(real, absent).loaded
    assert [point.values for point in rehearsed.points][:4] == [
        (("data.batch_size", 12), ("data.validation_split", 0.0)),
        (("data.batch_size", 12), ("data.validation_split", 0.125)),
        (("data.batch_size", 12), ("data.validation_split", 0.25)),
        (("data.batch_size", 4), ("data.validation_split", 0.0))]
    assert shape(compile_plan(rehearsed)) == shape(compile_plan(real))
    held_out = load_dataset("cifar10-synthetic", root=tmp_path, validation_split=0.125)
    assert (len(held_out.train), len(held_out.validation)) == (7, 1)


def test_a_slurm_job_compiles_the_rehearsal_that_was_submitted():
    from ltspec.runners.slurm_job import compiled

    source = {"path": str(QUICKSTART), "text": QUICKSTART.read_text(), "overrides": [], "rehearsal": True}
    keys = [stage.key for stage in compile_plan(rehearse(load_spec(QUICKSTART)).loaded).stages]
    assert list(compiled(source, keys)) == keys
    with pytest.raises(ValueError, match="compiles to other stages"):
        compiled({**source, "rehearsal": False}, keys)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "tiny-imagenet", "mnist1d"])
def test_a_synthetic_stand_in_has_the_real_datasets_shape_and_classes(name, tmp_path):
    real = datasets.info(name)
    stand_in = load_dataset(f"{name}-synthetic", root=tmp_path)
    assert stand_in.name == f"{name}-synthetic"
    assert tuple(stand_in.train.x.shape) == (datasets.STAND_IN_SIZE[0], *real.input_shape)
    assert tuple(stand_in.test.x.shape) == (datasets.STAND_IN_SIZE[1], *real.input_shape)
    assert stand_in.num_classes == real.num_classes and int(stand_in.train.y.max()) < real.num_classes
    assert stand_in.augmentable == real.augmentable
    again = load_dataset(f"{name}-synthetic", root=tmp_path)
    assert torch.equal(again.train.x, stand_in.train.x) and torch.equal(again.test.y, stand_in.test.y)


def test_a_sample_is_the_first_examples_of_the_real_data(tmp_path):
    real, sample = load_dataset("digits", root=tmp_path), load_dataset("digits-sample", root=tmp_path)
    size = datasets.STAND_IN_SIZE[0]
    assert torch.equal(sample.train.x, real.train.x[:size]) and torch.equal(sample.test.y, real.test.y[:size])
    assert (sample.mean, sample.std) == (real.mean, real.std)


def test_the_rehearsal_samples_the_data_that_is_there_and_stands_in_for_the_rest():
    notes = rehearse(load_spec(QUICKSTART)).notes  # digits ships with the package
    assert rehearse(load_spec(QUICKSTART)).loaded.spec.data.dataset == "digits-sample"
    assert any("digits-sample" in note for note in notes)
    missing = rehearse(load_spec(PAPER[0]), absent)
    assert any("not in data/" in note and "cifar10-synthetic" in note for note in missing.notes)


QUICK = """\
name = "tiny"
seeds = [0]
[data]
dataset = "cifar10"
root = "{folder}/data"
download = true
[model]
arch = "resnet20"
[train]
epochs = 30
lr = 0.1
schedule = {{ kind = "step", milestones = [20] }}
[masks.oneshot]
kind = "oneshot"
sparsities = [0.5]
[arms]
lottery = {{ start = "init" }}
rewind = {{ start = "rewind@10" }}
[measure]
pairs = [["init", "trained"], ["init*mask", "lottery"]]
[report]
layouts = ["dense", "lottery-vs-reinit", "rp-init-trained", "rp-masked", "arms", "rewind"]
[tracking]
uri = "sqlite:///{folder}/mlflow.db"
[storage]
root = "{folder}/results"
"""


@pytest.mark.slow
def test_run_rehearse_trains_offline_into_its_own_store_and_experiment_and_writes_its_report(tmp_path):
    spec = write_spec(tmp_path, QUICK)
    ran = ltspec("run", str(spec), "--rehearse", "--device", "cpu", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "cifar10-synthetic" in ran.stdout and not (tmp_path / "data").exists()  # nothing downloaded
    assert [path.name for path in (tmp_path / "results").iterdir()] == ["rehearsal"]
    folder = tmp_path / "reports" / "tiny-rehearsal"
    assert {"dense.md", "rp-init-trained.png", "rp-masked-oneshot.png", "rewind-oneshot.png", "claims.md"} <= \
        {path.name for path in folder.iterdir()}
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert client.get_experiment_by_name("tiny") is None
    experiment = client.get_experiment_by_name("tiny (rehearsal)")
    runs = client.search_runs([experiment.experiment_id])  # the stages', the trunk's, the report's
    assert sum(run.data.tags["ltspec.role"] == "stage" for run in runs) == len(compile_plan(load_spec(spec)).stages)
    assert {run.data.tags["ltspec.role"] for run in runs} == {"stage", "trunk", "report"}
    assert all(run.data.tags["ltspec.rehearsal"] == "true" for run in runs)
    (folder / "dense.csv").unlink()
    again = ltspec("report", str(spec), "--rehearse", "--format", "csv", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (folder / "dense.csv").exists() and not (tmp_path / "reports" / "tiny").exists()


def test_a_rehearsal_that_cannot_be_a_spec_says_so(tmp_path):
    spec = write_spec(tmp_path, QUICK.replace('name = "tiny"', f'name = "{"n" * 195}"'))
    with pytest.raises(SpecError) as error:  # `ltspec run --rehearse` prints it as any spec error, and exits 2
        rehearse(load_spec(spec), absent)
    assert [(problem.path, problem.message) for problem in error.value.problems] == \
        [(("name",), "in its rehearsal: is 205 characters long; at most 200 are allowed")]
