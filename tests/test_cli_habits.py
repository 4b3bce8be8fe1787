"""The command line's habits: --version, completion, plain flags, shipped specs, overrides, --only, resuming
stages in the plan and the run header, gc, and progress that fits 80 columns."""

import io
import json
import os
import tomllib
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st
from rich.console import Console
from rich.progress import Progress

from conftest import QUICKSTART, ROOT, ltspec, write_spec
from ltspec import __version__
from ltspec.cli.shell import quickstart_path, shown as _shown
from ltspec.plan import compile_plan
from ltspec.plan.select import parse_choices, select
from ltspec.plan.status import status
from ltspec.runners.common import progress_columns
from ltspec.spec import SpecError, load_spec
from ltspec.spec.overrides import parse_override
from ltspec.store import Store

QUICK_PLAN = compile_plan(load_spec(QUICKSTART))

STORED = """\
name = "stored"
seeds = [0]

[data]
dataset = "digits"

[model]
arch = "mlp"

[train]
epochs = 2
lr = 0.05

[masks.oneshot]
kind = "oneshot"
sparsities = [0.5]

[arms]
lottery = {{ start = "init" }}

[measure]
p = [0.2]
pairs = [["init", "trained"]]

[tracking]
uri = "sqlite:///{folder}/mlflow.db"

[storage]
root = "{folder}/results"
"""


def test_version_and_help_without_bool_noise(tmp_path):
    assert ltspec("--version", cwd=tmp_path).stdout == f"ltspec {__version__}\n"
    helped = ltspec("plan", "--help", cwd=tmp_path, env={**os.environ, "COLUMNS": "100"})
    assert "--json " in helped.stdout and "--only NAME=VALUE" in helped.stdout
    assert "<bool>" not in helped.stdout


def test_shell_completion_is_installed_and_completes_commands_and_options(tmp_path):
    assert "--install-completion" in ltspec("--help", cwd=tmp_path).stdout
    env = {**os.environ, "_LTSPEC_COMPLETE": "complete_bash", "COMP_WORDS": "ltspec run --on", "COMP_CWORD": "2"}
    assert ltspec(cwd=tmp_path, env=env).stdout.split() == ["--only"]
    env.update(COMP_WORDS="ltspec sp", COMP_CWORD="1")
    assert ltspec(cwd=tmp_path, env=env).stdout.split() == ["specs"]


def test_specs_lists_the_shipped_specs_and_init_copies_one_to_edit(tmp_path):
    listed = ltspec("specs", cwd=tmp_path).stdout.splitlines()
    assert listed[0].split()[0] == "quickstart" and "LeNet-300-100 on digits" in listed[0]
    names = [line.split()[0] for line in listed]
    assert {"paper/table1", "paper/rewind", "vgg16"} <= set(names)
    assert len(names) == len(list((ROOT / "specs").rglob("*.toml")))
    made = ltspec("init", "mine", "--from", "paper/table1", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    copied = (tmp_path / "mine.toml").read_text()
    assert tomllib.loads(copied)["name"] == "mine" and "#:schema" not in copied
    assert ltspec("validate", "mine.toml", cwd=tmp_path).returncode == 0
    again = ltspec("init", "mine", cwd=tmp_path)
    assert again.returncode == 2 and "exists already" in again.stderr
    unknown = ltspec("init", "other", "--from", "paper/nothing", cwd=tmp_path)
    assert unknown.returncode == 2 and "paper/table1" in unknown.stderr
    assert ltspec("init", "bad name", cwd=tmp_path).returncode == 2


def test_specs_ship_with_the_package():
    """`ltspec specs` reads them from inside the package (package data), not from the repository's folder."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"]["ltspec"]
    assert {"specs/*.toml", "specs/paper/*.toml"} <= set(data)
    assert (ROOT / "ltspec" / "specs" / "paper" / "table1.toml").is_file()


def test_overrides_are_checked_like_the_file_and_name_themselves(tmp_path):
    done = ltspec("validate", str(QUICKSTART), "train.lr=0.05", "seeds=[0]", cwd=tmp_path)
    assert done.returncode == 0 and "1 sweep point x 1 seed" in done.stdout
    bad = ltspec("validate", str(QUICKSTART), "train.epochs=0", "train.schedule.milestones=[1]", cwd=tmp_path)
    assert bad.returncode == 2
    assert "train.epochs: must be at least 1, found the whole number 0 (set by the override `train.epochs=0`)" in \
        bad.stderr
    unknown = ltspec("validate", str(QUICKSTART), "train.lrr=0.1", cwd=tmp_path)
    assert unknown.returncode == 2 and "override `train.lrr=0.1`" in unknown.stderr and "did you mean `lr`" in \
        unknown.stderr
    malformed = ltspec("plan", str(QUICKSTART), "train..lr=1", cwd=tmp_path)
    assert malformed.returncode == 2 and "is not a dotted key" in malformed.stderr


def test_an_override_of_a_swept_setting_fixes_the_sweep_and_plain_words_need_no_quotes():
    loaded = load_spec(QUICKSTART, ["train.lr=0.05", "data.dataset=synthetic", 'masks.imp.rounds=2'])
    assert [point.spec.train.lr for point in loaded.points] == [0.05]
    assert loaded.spec.data.dataset == "synthetic" and loaded.spec.masks["imp"].rounds == 2
    assert loaded.overrides == ("train.lr=0.05", "data.dataset=synthetic", "masks.imp.rounds=2")
    with pytest.raises(SpecError, match="an override is key=value"):
        load_spec(QUICKSTART, ["seeds"])


@given(st.lists(st.from_regex(r"[a-z][a-z_]{0,6}", fullmatch=True), min_size=1, max_size=3),
       st.one_of(st.integers(-10**6, 10**6), st.booleans(), st.lists(st.integers(0, 9), max_size=4),
                 st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8)))
def test_an_override_reads_back_the_key_and_value_it_was_written_from(path, value):
    """key=value, with the value written as TOML (JSON's ints, booleans, lists and strings are TOML too)."""
    key, written = ".".join(path), json.dumps(value, ensure_ascii=False)
    assert parse_override(f"{key}={written}") == (tuple(path), value)


def test_only_keeps_the_chosen_stages_and_what_they_need(tmp_path):
    done = ltspec("plan", str(QUICKSTART), "--only", "arm=lottery", "--only", "lr=0.01", "--only", "seed=0",
                  "--json", cwd=tmp_path)
    stages = json.loads(done.stdout)["stages"]
    kinds = {stage["kind"] for stage in stages}
    assert kinds == {"dense", "mask", "train"}
    trains = [stage for stage in stages if stage["kind"] == "train"]
    assert len(trains) == 5 and all(stage["labels"]["arm"] == "lottery" for stage in trains)
    keys = {stage["key"] for stage in stages}
    assert all(set(stage["parents"]) <= keys for stage in stages)
    wrong = ltspec("run", str(QUICKSTART), "--only", "arm=lotery", cwd=tmp_path)
    assert wrong.returncode == 2 and "arm is one of finetune, lottery, reinit" in wrong.stderr
    unknown = ltspec("report", "--only", "colour=red", cwd=tmp_path)
    assert unknown.returncode == 2 and "choose by generator, arm" in unknown.stderr


LABELS = sorted({(name, value) for stage in QUICK_PLAN.stages for name, value in stage.labels.items()
                 if name != "trunk" and value is not None}, key=str)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(LABELS), min_size=1, max_size=3))
def test_a_selection_is_closed_under_parents_and_made_of_matches_and_their_ancestors(chosen):
    choices = parse_choices([f"{name.removeprefix('sweep.')}={json.dumps(value)}" for name, value in chosen])
    part = select(QUICK_PLAN, choices)
    keys = {stage.key for stage in part.stages}
    assert all(set(stage.parents) <= keys for stage in part.stages)
    wanted = {}
    for name, value in chosen:
        wanted.setdefault(name, set()).add(value)
    matching = {stage.key for stage in QUICK_PLAN.stages
                if all(stage.labels.get(name) in values for name, values in wanted.items())}
    assert keys == matching.union(*(QUICK_PLAN.ancestors(key) for key in matching))


def test_plan_and_the_run_header_show_a_half_trained_stage(tmp_path):
    spec = write_spec(tmp_path, STORED)
    plan = compile_plan(load_spec(spec))
    store = Store(tmp_path / "results")
    dense = next(stage for stage in plan.stages if stage.kind.name == "dense")
    store.save_checkpoint(dense.key, {"epoch": 1, "hooks": {}})
    shown = ltspec("plan", str(spec), cwd=tmp_path, env={**os.environ, "COLUMNS": "120"})
    assert "1/2 ep done" in shown.stdout and "3 of 4 epochs left" in shown.stdout
    as_json = json.loads(ltspec("plan", str(spec), "--json", cwd=tmp_path).stdout)
    assert [stage["epochs_done"] for stage in as_json["stages"] if stage["kind"] == "dense"] == [1]
    found = status(plan, store)
    assert found.header() == f"0 done, {len(plan.stages)} to run, 1 resuming ({dense.describe()} at epoch 1/2)"
    assert found.epochs_left == 3


def test_gc_lists_and_deletes_only_what_no_given_spec_needs(tmp_path):
    spec = write_spec(tmp_path, STORED)
    plan = compile_plan(load_spec(spec))
    store = Store(tmp_path / "results")
    needed = plan.stages[0].key
    store.write_json(needed, "kept", {"a": 1})
    stray = "ab" + "0" * 18
    store.write_tensors(stray, "weights", {"w": torch.zeros(1000)})
    listed = ltspec("gc", str(spec), cwd=tmp_path)
    assert listed.returncode == 0 and stray in listed.stdout and needed not in listed.stdout
    assert "1 entries no given spec needs" in listed.stdout and store.stage_dir(stray).exists()
    deleted = ltspec("gc", str(spec), "--delete", cwd=tmp_path)
    assert "removed 1 entries" in deleted.stdout
    assert not store.stage_dir(stray).exists() and not store.stage_dir(stray).parent.exists()
    assert store.has(needed, "kept")


def test_report_defaults_to_the_quickstart_and_hints_name_no_package_path(tmp_path):
    done = ltspec("report", cwd=tmp_path)
    assert done.returncode == 1 and "quickstart" in done.stdout + done.stderr
    assert _shown(quickstart_path()) == "" and _shown(Path("mine.toml")) == " mine.toml"


def test_progress_stays_on_one_line_a_task_at_80_columns():
    out = io.StringIO()
    with Progress(*progress_columns(), console=Console(file=out, width=80), auto_refresh=False) as progress:
        overall = progress.add_task("stages 13/133", total=1440, info="epochs", eta=True)
        stage = progress.add_task("train lottery on imp r3 (87.5%)", total=12, info="test 0.944 loss 0.123")
        progress.update(overall, completed=400)
        progress.update(stage, completed=6)
        progress.refresh()
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    assert len(lines) == 2 and all(len(line) <= 80 for line in lines)
    assert "400/1440" in lines[0] and "eta" in lines[0] and "6/12" in lines[1]
    assert "eta" not in lines[1]
