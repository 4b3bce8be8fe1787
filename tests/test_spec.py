"""The spec language: every shipped spec validates; every kind of bad input gets a located, hinted error."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, ltspec
from ltspec.plan import compile_plan
from ltspec.spec import SpecError, load_spec, parse_spec
from ltspec.spec.schema import schema_text

SPECS = sorted((ROOT / "specs").rglob("*.toml"))

MINIMAL = """\
name = "tiny"
seeds = [0]

[data]
dataset = "digits"

[model]
arch = "lenet300100"

[train]
epochs = 4
lr = 0.05
optimizer = { kind = "sgd", momentum = 0.9, weight_decay = 5e-4 }
schedule = { kind = "step", milestones = [2], gamma = 0.1 }

[masks.imp]
kind = "imp"
rate = 0.5
rounds = 2

[arms]
lottery = { start = "init" }
finetune = { start = "trained" }

[measure]
p = [0.2]
pairs = [["init", "trained"], ["init*mask", "finetune"]]
"""


def problems(source: str) -> list:
    with pytest.raises(SpecError) as caught:
        parse_spec(source, "bad.toml")
    return caught.value.problems


def only_problem(source: str):
    found = problems(source)
    assert len(found) == 1, [p.render("bad.toml") for p in found]
    return found[0]


@pytest.mark.parametrize("path", SPECS, ids=[str(p.relative_to(ROOT / "specs")) for p in SPECS])
def test_every_shipped_spec_validates_and_compiles(path):
    loaded = load_spec(path)
    plan = compile_plan(loaded)
    assert plan.stages and plan.epochs <= plan.naive_epochs
    schema = "../" * len(path.relative_to(ROOT / "specs").parents) + "schemas/ltspec.schema.json"
    assert path.read_text().startswith(f"#:schema {schema}\n")


def test_minimal_spec_is_valid():
    loaded = parse_spec(MINIMAL)
    assert loaded.spec.train.optimizer.weight_decay == 5e-4
    assert [point.values for point in loaded.points] == [()]


def test_misspelt_key_names_line_column_and_suggests_the_field():
    problem = only_problem(MINIMAL.replace("weight_decay = 5e-4", "weight_dcay = 5e-4"))
    assert problem.path == ("train", "optimizer", "weight_dcay")
    assert (problem.line, problem.column) == (13, 45)
    assert "did you mean `weight_decay`?" in problem.hint
    assert problem.render("bad.toml").startswith("bad.toml:13:45: train.optimizer.weight_dcay: unknown key")


def test_wrong_type_says_what_was_found():
    problem = only_problem(MINIMAL.replace("epochs = 4", 'epochs = "four"'))
    assert problem.path == ("train", "epochs") and problem.line == 11
    assert 'expected a whole number, found the string "four"' in problem.message


def test_out_of_range_fraction():
    problem = only_problem(MINIMAL.replace("rate = 0.5", "rate = 1.5"))
    assert problem.path == ("masks", "imp", "rate") and problem.line == 18
    assert "less than 1" in problem.message


def test_missing_required_field():
    problem = only_problem(MINIMAL.replace("lr = 0.05\n", ""))
    assert problem.path == ("train", "lr") and problem.message == "required field is missing"


def test_unknown_discriminator_lists_the_choices():
    problem = only_problem(MINIMAL.replace('kind = "imp"', 'kind = "lottery"'))
    assert problem.path[:2] == ("masks", "imp") and "oneshot" in problem.message


def test_toml_syntax_error_has_its_position():
    problem = only_problem(MINIMAL.replace("epochs = 4", "epochs = = 4"))
    assert problem.line == 11 and problem.message.startswith("TOML syntax error")


def test_duplicate_generator_names_are_a_syntax_error():
    problem = only_problem(MINIMAL + '\n[masks.imp]\nkind = "oneshot"\nsparsities = [0.5]\n')
    assert "TOML syntax error" in problem.message


@pytest.mark.parametrize("content, message", [
    (None, "no such file"), ("dir", "is a directory"), (b"", "is empty"), (b"   \n\n", "is empty"),
    (b'name = "caf\xe9"\n', "not UTF-8"),
])
def test_unreadable_files(tmp_path, content, message):
    path = tmp_path / "spec.toml"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert message in str(caught.value)


@pytest.mark.parametrize("change, path, words", [
    (("milestones = [2]", "milestones = [6]"), ("train", "schedule", "milestones", 0), "not inside"),
    (("milestones = [2]", "milestones = [3, 2]"), ("train", "schedule", "milestones"), "not increasing"),
    (('arch = "lenet300100"', 'arch = "resnet21"'), ("model", "arch"), "unknown architecture"),
    (('arch = "lenet300100"', 'arch = "vgg16"'), ("model", "arch"), "at least"),
    (('start = "trained"', 'start = "rewind@9"'), ("arms", "finetune", "start"), "outside"),
    (("rounds = 2", "rounds = 2\ntarget_sparsity = 0.9"), ("masks", "imp"), "exactly one"),
    (('rate = 0.5', 'rate = 0.5\nexclude = ["conv9"]'), ("masks", "imp", "exclude", 0), "matches no prunable"),
    (('["init", "trained"]', '["init", "trianed"]'), ("measure", "pairs", 0, 1), "not a weight set"),
    (('[arms]', '[arms]\n"my arm" = { start = "init" }'), ("arms", "my arm"), "cannot name an arm"),
])
def test_cross_field_checks(change, path, words):
    problem = only_problem(MINIMAL.replace(*change))
    assert problem.path == path and words in problem.message, problem.render("bad.toml")
    assert problem.line is not None


def test_misspelt_architecture_gets_a_suggestion():
    problem = only_problem(MINIMAL.replace('arch = "lenet300100"', 'arch = "lenet-300-100"'))
    assert problem.hint == "did you mean `lenet300100`?"


def test_sparse_vs_dense_pair_needs_p_below_density():
    source = MINIMAL.replace('pairs = [["init", "trained"], ["init*mask", "finetune"]]',
                             'pairs = [["finetune", "init"]]').replace("p = [0.2]", "p = [0.2, 0.3]")
    problem = only_problem(source)
    assert problem.path == ("measure", "p") and "p = 0.3" in problem.message and "sparsity 0.750" in problem.message


def test_sweep_expands_a_product_and_validates_each_point():
    loaded = parse_spec(MINIMAL + '\n[sweep]\n"train.lr" = [0.01, 0.1]\n"masks.imp.rate" = [0.2, 0.5]\n')
    assert [dict(p.values) for p in loaded.points] == [
        {"train.lr": 0.01, "masks.imp.rate": 0.2}, {"train.lr": 0.01, "masks.imp.rate": 0.5},
        {"train.lr": 0.1, "masks.imp.rate": 0.2}, {"train.lr": 0.1, "masks.imp.rate": 0.5}]
    assert loaded.points[3].spec.masks["imp"].rate == 0.5


def test_bad_sweep_value_is_blamed_on_the_sweep_entry():
    problem = only_problem(MINIMAL + '\n[sweep]\n"train.lr" = [0.01, -1.0]\n')
    assert problem.path == ("sweep", "train.lr", 1) and (problem.line, problem.column) == (30, 21)
    assert "with train.lr = -1.0" in problem.message


def test_sweep_path_must_exist():
    problem = only_problem(MINIMAL + '\n[sweep]\n"train.learning_rate" = [0.01]\n')
    assert problem.path == ("sweep", "train.learning_rate") and "not a field" in problem.message


def test_every_problem_is_reported_at_once():
    source = MINIMAL.replace("epochs = 4", "epochs = 0").replace("weight_decay", "wd")
    assert len(problems(source)) == 2


def test_committed_schema_is_current():
    committed = (ROOT / "schemas" / "ltspec.schema.json").read_text()
    assert committed == schema_text(), "schemas/ltspec.schema.json is stale: run `ltspec schema`"
    assert "weight_decay" in json.dumps(json.loads(committed))


def test_validate_exits_2_with_no_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL.replace("weight_decay", "weight_dcay"))
    result = ltspec("validate", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert "did you mean `weight_decay`?" in result.stderr
    assert list(tmp_path.iterdir()) == [bad], "validate must write nothing"


def test_validate_and_plan_import_neither_torch_nor_mlflow():
    heavy = "sorted(m for m in ('torch', 'mlflow', 'numpy', 'rich') if m in sys.modules)"
    code = ("import sys; from typer.testing import CliRunner; from ltspec.cli import app; "
            "r = CliRunner().invoke(app, ['validate', 'specs/vgg16.toml']); assert r.exit_code == 0, r.output; "
            f"print({heavy}); "
            "r = CliRunner().invoke(app, ['plan', 'specs/vgg16.toml']); assert r.exit_code == 0, r.output; "
            f"print({heavy}); "
            "r = CliRunner().invoke(app, ['plan', 'specs/vgg16.toml', '--tree']); assert r.exit_code == 0, r.output; "
            f"print({heavy})")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["[]", "[]", "['rich']"], "rich only for the plan's tree"


@pytest.mark.parametrize("setting", [None, "logfire"])
def test_building_the_spec_models_leaves_the_pydantic_plugin_setting_alone(setting):
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    if setting is not None:
        env["PYDANTIC_DISABLE_PLUGINS"] = setting
    code = "import os, ltspec.spec; print(os.environ.get('PYDANTIC_DISABLE_PLUGINS'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.stdout.strip() == str(setting)


def test_shortcut_only_for_resnets():
    problem = only_problem(MINIMAL.replace('arch = "lenet300100"', 'arch = "lenet300100"\nshortcut = "B"'))
    assert problem.path == ("model", "shortcut") and "no shortcut" in problem.message


def test_the_shipped_quickstart_is_the_one_in_specs():
    assert (ROOT / "specs" / "quickstart.toml").read_text() == (ROOT / "ltspec" / "quickstart.toml").read_text()


def test_a_bad_sweep_path_does_not_hide_the_other_problems():
    found = problems(MINIMAL.replace("rate = 0.5", "rate = 1.5") + '\n[sweep]\n"train.learning_rate" = [0.01]\n')
    assert {problem.path for problem in found} == {("sweep", "train.learning_rate"), ("masks", "imp", "rate")}


def test_type_errors_do_not_hide_cross_field_problems():
    found = problems(MINIMAL.replace("weight_decay", "weight_dcay").replace("milestones = [2]", "milestones = [6]"))
    assert {problem.path for problem in found} == {("train", "optimizer", "weight_dcay"),
                                                  ("train", "schedule", "milestones", 0)}
