"""The whole paper from the shipped specs: one plan for specs/paper/ that trains each dense trunk once, the README's
coverage table naming a spec and a report file for every figure and table of the paper, and several specs run one
after another on one store."""

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings

from conftest import ROOT, ltspec
from ltspec.plan import compile_plan
from ltspec.plan.combine import combine
from ltspec.report.collect import Results, sweep_points
from ltspec.layouts import build_tables
from ltspec.spec import load_spec
from test_plan import compiled, specs

PAPER = sorted((ROOT / "specs" / "paper").glob("*.toml"))
# Every figure and table of the paper (main text, appendix, Table 1)
FIGURES = ["Fig. 2", "Fig. 4", "Fig. 5a/b", "Fig. 5c/d", "Fig. 6a", "Fig. 6b", "Fig. 6c", "Fig. 7", "App. A1",
           "App. B2", "App. C3", "App. D4", "App. D5", "App. D6", "App. E7-E10", "App. E11-E12", "App. G13", "Table 1"]


@pytest.fixture(scope="module")
def plans():
    return {path.name: compile_plan(load_spec(path)) for path in PAPER}


def test_the_paper_plan_trains_each_dense_trunk_once(plans):
    merged = combine(list(plans.values()), "paper")
    trunks = merged.plan.trunks
    # three models x two datasets x two learning rates x five seeds, whichever specs need them
    assert len(trunks) == len({stage.key for stage in trunks}) == 3 * 2 * 2 * 5
    assert {(t.config.model.arch, t.config.data.dataset, t.config.train.lr) for t in trunks} == {
        (arch, dataset, lr) for arch in ("resnet20", "vgg11", "mobilenetv2") for dataset in ("cifar10", "cifar100")
        for lr in (0.01, 0.1)}
    resnet = next(t for t in trunks if t.config.model.arch == "resnet20" and t.config.data.dataset
                  == "cifar100" and t.config.train.lr == 0.1 and t.config.seed == 0)
    users = sorted(plan.name for plan in plans.values() if resnet.key in {t.key for t in plan.trunks})
    assert users == ["admm-table1", "generators", "resnet20-cifar100", "rewind-admm-cifar100"]
    assert 10 in merged.plan.stage(resnet.key).runtime["saves"]  # the rewind spec's θ10, whoever trains it
    assert merged.plan.epochs < merged.separate_epochs < merged.naive_epochs


def test_the_shared_admm_masks_and_arms_are_one_stage_across_specs(plans):
    """Table 1's ADMM mask and fine-tune arm at 50% are the generator spec's; the rewind spec's lottery too."""
    def keys(name, arm):
        return {run.stage for run in plans[name].arms if run.generator == "admm" and run.arm == arm
                and run.sparsity == 0.5}

    assert keys("table1.toml", "finetune") <= keys("generators.toml", "finetune")
    assert keys("rewind.toml", "lottery") <= keys("generators.toml", "lottery")
    assert len(keys("table1.toml", "finetune")) == 30


@settings(max_examples=20, deadline=None)
@given(specs(), specs())
def test_combining_plans_keeps_every_stage_once_parents_first_and_leaves_the_plans_alone(first, second):
    a, b = compiled(first), compiled(second)
    labels = [dict(stage.labels) for stage in a.stages]
    merged = combine([a, b, a], "both")
    keys = [stage.key for stage in merged.plan.stages]
    assert sorted(keys) == sorted({stage.key for plan in (a, b) for stage in plan.stages})
    position = {key: index for index, key in enumerate(keys)}
    assert all(position[parent] < position[stage.key] for stage in merged.plan.stages for parent in stage.parents)
    assert merged.plan.epochs <= a.epochs + b.epochs and merged.separate_epochs == 2 * a.epochs + b.epochs
    assert [stage.labels for stage in a.stages] == labels


def test_plan_on_the_folder_prints_the_epochs_and_the_sharing_across_specs(tmp_path):
    result = ltspec("plan", str(ROOT / "specs" / "paper"), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert len([stage for stage in plan["stages"] if stage["kind"] == "dense"]) == 60
    result = ltspec("plan", str(ROOT / "specs" / "paper"), cwd=tmp_path)
    summary = " ".join(result.stdout.split()[-40:])
    assert re.search(r"9 specs, 60 dense trunks: run apart they would train \d+ epochs; sharing across the specs "
                     r"saves \d+", summary), summary
    assert f"{plan['epochs']} of {plan['epochs']} epochs left to train" in summary


def test_validate_reports_every_bad_spec_of_several(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n')
    result = ltspec("validate", str(ROOT / "specs" / "quickstart.toml"), str(bad), str(tmp_path / "none.toml"))
    assert result.returncode == 2
    assert "ok " in result.stdout and "bad.toml: " in result.stderr and "none.toml: " in result.stderr


def readme_coverage() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| paper | what it shows |"):].split("\n\n")[0].splitlines()[2:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table]


def test_the_readme_coverage_table_names_a_spec_and_a_report_file_for_every_figure():
    rows = readme_coverage()
    assert all(any(row[0].startswith(name) for row in rows) for name in FIGURES), [row[0] for row in rows]
    for figure, _, spec, layout, files in rows:
        assert figure and spec and layout and files, figure
        paths = re.findall(r"`(specs/[^`]+\.toml)`", spec)
        assert paths, figure
        stems = {stem for path in paths for stem in report_stems(ROOT / path)}
        named = re.findall(r"`([a-z0-9-]+)\.(?:png|md)`", files)
        assert named and set(named) <= stems, (figure, named, sorted(stems))


def report_stems(path: Path) -> set[str]:
    """The files `ltspec report` writes for a spec: its tables (and their figures) and claims.md."""
    loaded = load_spec(path)
    tables = build_tables(Results(sweep_points(loaded), {}), loaded.spec.report.layouts)
    return {table.name for table in tables} | {"claims"}
