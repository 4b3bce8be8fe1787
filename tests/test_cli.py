"""The command line as a user meets it: JSON plans, clear errors and exit codes, the MLflow UI."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

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


def test_plan_tree_shows_the_savings(tmp_path):
    result = ltspec("plan", str(QUICKSTART), cwd=tmp_path)
    assert result.returncode == 0
    assert "sharing saves 1248 of 2016 epochs" in " ".join(result.stdout.split())


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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_ui_serves_the_tracking_store_on_loopback_and_a_killed_ui_takes_its_mlflow_server_with_it(tmp_path):
    """`ltspec ui` answers on 127.0.0.1; a SIGKILL of it runs no handler, yet the server it started must not listen
    on, orphaned. (One `ltspec ui` for both: starting it is most of the time either half takes.)"""
    import psutil

    port = free_port()
    ui = subprocess.Popen([sys.executable, "-m", "ltspec", "ui", "--port", str(port)], cwd=tmp_path,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        status = None
        for _ in range(900):
            if ui.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    status = response.status
                    break
            except OSError:
                time.sleep(0.1)
        assert status == 200
        server = psutil.Process(ui.pid).children()
        assert server, "ltspec ui started no server"
        group = [server[0], *server[0].children(recursive=True)]
    finally:
        ui.kill()
        ui.wait()
    gone, alive = psutil.wait_procs(group, timeout=30)
    assert not alive, f"left running: {[process.cmdline() for process in alive]}"
