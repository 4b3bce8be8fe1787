"""The command line as a user meets it: JSON plans, clear errors and exit codes (`ltspec ui`: test_mlflow_ui.py)."""

import json
import os

import pytest
import torch

from conftest import QUICKSTART, ltspec


def test_plan_json_lists_every_stage_with_its_epochs(tmp_path):
    result = ltspec("plan", str(QUICKSTART), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["name"] == "quickstart" and len(plan["stages"]) == 128
    assert sum(stage["epochs"] for stage in plan["stages"]) == plan["epochs"] == 768
    assert plan["naive_epochs"] > plan["epochs"] and not any(stage["done"] for stage in plan["stages"])
    assert {stage["kind"] for stage in plan["stages"]} == {"dense", "mask", "train", "evaluate", "measure"}


def test_plan_is_a_summary_and_the_tree_is_asked_for(tmp_path):
    result = ltspec("plan", str(QUICKSTART), cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.splitlines()[-1] == ("128 stages, 0 already done; 768 of 768 epochs left to train; sharing "
                                              "saves 1248 of 2016 epochs")
    assert len(result.stdout.splitlines()) == 2 and "todo" not in result.stdout
    tree = ltspec("plan", str(QUICKSTART), "--tree", cwd=tmp_path, env={**os.environ, "COLUMNS": "200"})
    assert tree.stdout.count("todo") == 128


def test_report_without_runs_says_so_and_exits_1(tmp_path):
    result = ltspec("report", str(QUICKSTART), cwd=tmp_path)
    assert result.returncode == 1
    assert "ltspec run" in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_unknown_runner_is_a_clear_error(tmp_path):
    result = ltspec("run", str(QUICKSTART), "--runner", "kubernetes", cwd=tmp_path)
    assert result.returncode == 2 and "unknown runner `kubernetes`" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for CUDA on a machine without it")
def test_cuda_without_a_gpu_is_a_clear_error_before_anything_is_written(tmp_path):
    result = ltspec("run", str(QUICKSTART), "--device", "cuda", cwd=tmp_path)
    assert result.returncode == 2 and "no CUDA device" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists()
