"""Tickets as results: `ltspec.load` and `ltspec export` find a trained arm by its labels, and refuse clearly."""

import json
import os
import re
import shutil
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
def test_load_returns_the_trained_ticket_with_its_mask_and_trunk_points(trained_tickets):
    ticket = ltspec.load(trained_tickets, generator="imp", sparsity=0.75, arm="lottery", lr=0.1, points=True)
    assert ticket.stage.labels["arm"] == "lottery" and ticket.stage.labels["sweep.train.lr"] == 0.1
    assert ticket.mask.sparsity() == pytest.approx(0.75)
    store = Store(load_spec(trained_tickets).spec.storage.root)
    final = store.read_tensors(ticket.stage.key, "final")
    state = ticket.model.state_dict()
    assert all(torch.equal(state[name], final[name]) for name in final)
    for name, kept in ticket.mask.items():
        assert not state[name][~kept].any(), f"{name} has weights where the mask prunes"
    assert {"init", "reinit", "trained"} <= set(ticket.points)
    assert ticket.points["init"].keys() == state.keys()
    assert not ticket.model.training


@pytest.mark.slow
def test_export_writes_files_that_a_plain_torch_program_loads(trained_tickets, tmp_path):
    out = tmp_path / "ticket"
    done = run_ltspec("export", str(trained_tickets), "--generator", "imp", "--sparsity", "0.75", "--arm", "lottery",
                      "--seed", "0", "--sweep", "lr=0.05", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    about = json.loads((out / "ticket.json").read_text())
    assert about["labels"]["arm"] == "lottery" and about["labels"]["sparsity"] == 0.75
    state = torch.load(out / "state_dict.pt", weights_only=True)
    mask = torch.load(out / "mask.pt", weights_only=True)
    model = build_model(**about["build_model"])
    model.load_state_dict(state)  # strict: every key, every shape
    assert set(mask) <= set(state)
    assert 1 - sum(int(kept.sum()) for kept in mask.values()) / sum(kept.numel() for kept in mask.values()) == \
        pytest.approx(0.75, abs=0.01)
    assert f"test accuracy {about['metrics']['final_test_accuracy']:.4f}" in done.stdout


@pytest.mark.slow
def test_export_refuses_a_ticket_the_spec_lacks_or_has_not_trained(trained_tickets, tmp_path):
    """`ltspec export` turns the refusals of `ltspec.load` into exit 2 (one command for all three: they take one path
    through it); the refusals themselves are asked of `load` here, in this process."""
    with pytest.raises(TicketError, match="sparsity is one of 0.5, 0.75"):
        ltspec.load(trained_tickets, generator="imp", sparsity=0.9, arm="lottery", lr=0.1)
    with pytest.raises(TicketError, match=r"train.lr \(0.05, 0.1\)"):
        ltspec.load(trained_tickets, generator="imp", sparsity=0.5, arm="reinit")
    untrained = tmp_path / "longer.toml"
    untrained.write_text(trained_tickets.read_text().replace("epochs = 1", "epochs = 2"))
    with pytest.raises(TicketError, match="is not trained yet"):
        ltspec.load(untrained, generator="imp", sparsity=0.5, arm="reinit", lr=0.1)
    later = run_ltspec("export", str(untrained), "--generator", "imp", "--sparsity", "0.5", "--arm", "reinit",
                       "--sweep", "lr=0.1", "--out", str(tmp_path / "c"), cwd=tmp_path)
    assert later.returncode == 2 and "is not trained yet" in later.stderr and "Traceback" not in later.stderr
    assert not (tmp_path / "c").exists()


@pytest.mark.slow
def test_train_runs_carry_their_store_path_and_final_weights(trained_tickets):
    spec = load_spec(trained_tickets).spec
    client = MlflowClient(spec.tracking.uri)
    experiment = client.get_experiment_by_name(spec.name)
    runs = client.search_runs([experiment.experiment_id], "tags.`ltspec.kind` = 'train'")
    assert len(runs) == 8
    for run in runs:
        folder = Path(run.data.tags[STORE_PATH])
        assert (folder / "final.pt").is_file() and folder.name == run.data.tags["ltspec.stage_key"]
        assert [artifact.path for artifact in client.list_artifacts(run.info.run_id)] == ["final.pt"]


def readme_blocks(language: str) -> list[str]:
    """The code blocks of one language in the README's "After the quickstart" section."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## After the quickstart"):readme.index("## Commands")]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


@pytest.mark.slow
def test_the_readme_walk_after_the_quickstart_works_as_written(tmp_path):
    """The quickstart's seed 0 at lr 0.01 (all the README's commands read), then every command as written."""
    (tmp_path / "specs").mkdir()
    shutil.copy(ROOT / "specs" / "quickstart.toml", tmp_path / "specs" / "quickstart.toml")
    ran = run_ltspec("run", "specs/quickstart.toml", "--only", "seed=0", "--only", "lr=0.01", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    python, = readme_blocks("python")
    done = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lottery, reinit = map(float, done.stdout.split()[:2])
    assert done.stdout.split()[2:] == ["0.875", "Sequential"] and 0 < reinit < lottery <= 1
    ui, export = readme_blocks("bash")
    exported = subprocess.run(export, shell=True, capture_output=True, text=True, cwd=tmp_path,
                              env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert exported.returncode == 0, exported.stderr
    assert {path.name for path in (tmp_path / "ticket").iterdir()} == {"state_dict.pt", "mask.pt", "ticket.json"}
    assert ui.strip() == "ltspec ui specs/quickstart.toml"
