"""Tickets as results: `ltspec.load` and `ltspec export` find a trained arm by its labels, and refuse clearly."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

import ltspec
from conftest import ROOT, ltspec as run_ltspec
from ltspec.nets import build_model
from ltspec.plan import compile_plan
from ltspec.spec import load_spec
from ltspec.store import Store
from ltspec.tickets import TicketError, find
from ltspec.tracking import STORE_PATH


def test_importing_ltspec_imports_no_torch_and_load_is_there_on_demand():
    code = ("import sys, ltspec; assert 'torch' not in sys.modules; assert callable(ltspec.load); "
            "assert 'torch' not in sys.modules; ltspec.no_such_thing")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert "AttributeError: module 'ltspec' has no attribute 'no_such_thing'" in done.stderr


def test_find_names_what_is_missing_or_ambiguous_without_training(tmp_path):
    plan = compile_plan(load_spec(ROOT / "specs" / "quickstart.toml"))
    stage = find(plan, generator="imp", sparsity=0.875, arm="lottery", seed=0, lr=0.01)
    assert stage.labels["round"] == 3 and stage.labels["sweep.train.lr"] == 0.01
    with pytest.raises(TicketError, match="sparsity is one of 0.5, 0.75, 0.875"):
        find(plan, generator="imp", sparsity=0.9, arm="lottery", seed=0, lr=0.01)
    with pytest.raises(TicketError, match=r"say which by seed \(0, 1\); train.lr \(0.01, 0.1\)"):
        find(plan, generator="imp", sparsity=0.875, arm="lottery")
    with pytest.raises(TicketError, match="arm is one of finetune, lottery, reinit"):
        find(plan, generator="imp", sparsity=0.875, arm="lotery", seed=0, lr=0.01)


@pytest.mark.slow
def test_load_returns_the_trained_ticket_with_its_mask_and_trunk_points(trained_quickstart, monkeypatch):
    monkeypatch.chdir(trained_quickstart.folder)  # the quickstart's store and tracking paths are relative
    ticket = ltspec.load(trained_quickstart.spec, generator="imp", sparsity=0.75, arm="lottery", seed=0, lr=0.01,
                         points=True)
    assert ticket.stage.labels["arm"] == "lottery" and ticket.stage.labels["sweep.train.lr"] == 0.01
    assert ticket.mask.sparsity() == pytest.approx(0.75)
    final = Store(trained_quickstart.folder / "results").read_tensors(ticket.stage.key, "final")
    state = ticket.model.state_dict()
    assert all(torch.equal(state[name], final[name]) for name in final)
    for name, kept in ticket.mask.items():
        assert not state[name][~kept].any(), f"{name} has weights where the mask prunes"
    assert {"init", "reinit", "trained"} <= set(ticket.points)
    assert ticket.points["init"].keys() == state.keys()
    assert not ticket.model.training


@pytest.mark.slow
def test_load_refuses_a_ticket_the_spec_lacks_or_has_not_trained_and_export_exits_2(trained_quickstart, monkeypatch,
                                                                                    tmp_path):
    """`ltspec export` turns the refusals of `ltspec.load` into exit 2 (one command for all three: they take one path
    through it); the refusals themselves are asked of `load` here, in this process. The quickstart's lr 0.1 is in
    its plan but not trained."""
    monkeypatch.chdir(trained_quickstart.folder)
    spec = trained_quickstart.spec
    with pytest.raises(TicketError, match="sparsity is one of 0.5, 0.75, 0.875"):
        ltspec.load(spec, generator="imp", sparsity=0.9, arm="lottery", seed=0, lr=0.01)
    with pytest.raises(TicketError, match=r"say which by seed \(0, 1\); train.lr \(0.01, 0.1\)"):
        ltspec.load(spec, generator="imp", sparsity=0.5, arm="reinit")
    with pytest.raises(TicketError, match="is not trained yet"):
        ltspec.load(spec, generator="imp", sparsity=0.5, arm="reinit", seed=0, lr=0.1)
    later = run_ltspec("export", str(spec), "--generator", "imp", "--sparsity", "0.5", "--arm", "reinit", "--seed",
                       "0", "--sweep", "lr=0.1", "--out", str(tmp_path / "c"), cwd=trained_quickstart.folder)
    assert later.returncode == 2 and "is not trained yet" in later.stderr and "Traceback" not in later.stderr
    assert not (tmp_path / "c").exists()


@pytest.mark.slow
def test_train_runs_carry_their_store_path_and_final_weights(trained_quickstart):
    client = MlflowClient(trained_quickstart.uri)
    experiment = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([experiment.experiment_id], "tags.`ltspec.kind` = 'train'")
    assert sorted(run.data.tags["ltspec.stage_key"] for run in runs) == sorted(
        stage.key for stage in trained_quickstart.trained() if stage.kind.name == "train")
    for run in runs:
        folder = Path(run.data.tags[STORE_PATH])
        assert (folder / "final.pt").is_file() and folder.name == run.data.tags["ltspec.stage_key"]
        assert [artifact.path for artifact in client.list_artifacts(run.info.run_id)] == ["final.pt"]


def readme_blocks(language: str) -> list[str]:
    """The code blocks of one language in the README's "After the quickstart" section."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## After the quickstart"):readme.index("## Commands")]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


@pytest.fixture(scope="module")
def walked(trained_quickstart) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess, str]:
    """The README's walk after the quickstart, every command as written, in the trained quickstart's folder: its
    Python block and its `ltspec export` (which writes `ticket/` there); returns both results and the `ltspec ui`
    command it shows."""
    python, = readme_blocks("python")
    done = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True,
                          cwd=trained_quickstart.folder)
    ui, export = readme_blocks("bash")
    exported = subprocess.run(export, shell=True, capture_output=True, text=True, cwd=trained_quickstart.folder,
                              env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    return done, exported, ui


@pytest.mark.slow
def test_the_readme_walk_after_the_quickstart_works_as_written(walked, trained_quickstart):
    done, exported, ui = walked
    assert done.returncode == 0, done.stderr
    lottery, reinit = map(float, done.stdout.split()[:2])
    assert done.stdout.split()[2:] == ["0.875", "Sequential"] and 0 < reinit < lottery <= 1
    assert exported.returncode == 0, exported.stderr
    assert {path.name for path in (trained_quickstart.folder / "ticket").iterdir()} == {
        "state_dict.pt", "mask.pt", "ticket.json"}
    assert ui.strip() == "ltspec ui specs/quickstart.toml"


@pytest.mark.slow
def test_export_writes_files_that_a_plain_torch_program_loads(walked, trained_quickstart):
    """What the README's `ltspec export` wrote (the lottery ticket of IMP at 87.5%, seed 0, lr 0.01)."""
    _, exported, _ = walked
    assert exported.returncode == 0, exported.stderr
    out = trained_quickstart.folder / "ticket"
    about = json.loads((out / "ticket.json").read_text())
    assert about["labels"]["arm"] == "lottery" and about["labels"]["sparsity"] == 0.875
    state = torch.load(out / "state_dict.pt", weights_only=True)
    mask = torch.load(out / "mask.pt", weights_only=True)
    model = build_model(**about["build_model"])
    model.load_state_dict(state)  # strict: every key, every shape
    assert set(mask) <= set(state)
    assert 1 - sum(int(kept.sum()) for kept in mask.values()) / sum(kept.numel() for kept in mask.values()) == \
        pytest.approx(0.875, abs=0.01)
    assert f"test accuracy {about['metrics']['final_test_accuracy']:.4f}" in exported.stdout
