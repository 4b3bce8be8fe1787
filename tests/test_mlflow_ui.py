"""MLflow that a user navigates without help: what the UI reads (experiment tags, run names, parent spans, dataset
inputs, links), the server `ltspec ui` starts, and, where Chromium is installed, the page a browser shows."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from urllib.parse import parse_qs, urlsplit

import pytest
from mlflow import MlflowClient

from conftest import QUICKSTART
from ltspec.plan import compile_plan
from ltspec.spec import load_spec
from ltspec.tracking import OVERRIDES, runs_url
from ltspec.ui import comparison

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def experiment_runs(quickstart):
    client = MlflowClient(quickstart.uri)
    experiment = client.get_experiment_by_name("quickstart")
    return client, experiment, client.search_runs([experiment.experiment_id], max_results=1000)


def test_the_comparison_link_filters_one_mask_at_one_point_of_the_sweep():
    title, search = comparison(compile_plan(load_spec(QUICKSTART)))
    assert title == "lottery vs reinit, imp at 87.5% train.lr=0.01"
    assert search == ("tags.`ltspec.kind` = 'train' and tags.`ltspec.generator` = 'imp' and "
                      "tags.`ltspec.sparsity_target` = '0.875' and tags.`ltspec.sweep.train.lr` = '0.01'")
    query = parse_qs(urlsplit(runs_url("http://127.0.0.1:5000", "7", search)).fragment.split("?", 1)[1])
    assert query == {"workflowType": ["machine_learning"], "orderByKey": ["tags.`mlflow.runName`"],
                     "orderByAsc": ["true"], "searchFilter": [search]}


DESCRIPTION = "LeNet-300-100 on digits: IMP and one-shot tickets at lr 0.01 and 0.1"


@pytest.mark.slow
def test_the_experiment_opens_on_model_training_with_the_spec_description(trained_quickstart):
    _, experiment, runs = experiment_runs(trained_quickstart)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.tags["mlflow.note.content"] == DESCRIPTION
    assert all(run.data.tags[OVERRIDES] == " ".join(trained_quickstart.overrides) for run in runs)


@pytest.mark.slow
def test_run_names_are_unique_and_the_trunk_spans_its_stages(trained_quickstart):
    _, _, runs = experiment_runs(trained_quickstart)
    stages = trained_quickstart.trained()
    names = [run.info.run_name for run in runs]
    assert len(names) == len(set(names)) == len(stages) + 1
    assert "train lottery on imp r3 (87.5%) seed=0 train.lr=0.01" in names
    (trunk,) = [run for run in runs if run.data.tags["ltspec.role"] == "trunk"]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == trunk.info.run_id]
    assert len(children) == len(stages)
    assert trunk.info.start_time <= min(child.info.start_time for child in children)
    assert trunk.info.end_time >= max(child.info.end_time for child in children)


@pytest.mark.slow
def test_every_run_that_reads_data_logs_its_dataset(trained_quickstart):
    _, _, runs = experiment_runs(trained_quickstart)
    for run in runs:
        inputs = run.inputs.dataset_inputs
        if run.data.tags["ltspec.role"] == "trunk" or run.data.tags["ltspec.kind"] in ("dense", "train", "evaluate"):
            assert [entry.dataset.name for entry in inputs] == ["digits"], run.info.run_name
            assert json.loads(inputs[0].dataset.source)["dataset"] == "digits"
    digests = {entry.dataset.digest for run in runs for entry in run.inputs.dataset_inputs}
    assert len(digests) == 1


@pytest.mark.slow
def test_the_comparison_filter_finds_the_arms_on_one_mask(trained_quickstart):
    client, experiment, _ = experiment_runs(trained_quickstart)
    _, search = comparison(trained_quickstart.plan())
    found = client.search_runs([experiment.experiment_id], search)
    assert sorted(run.info.run_name for run in found) == [f"train {arm} on imp r3 (87.5%) seed=0 train.lr=0.01"
                                                          for arm in ("finetune", "lottery", "reinit")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ui_server(trained_quickstart):
    """`ltspec ui specs/quickstart.toml` on a free port in the trained quickstart's folder (the one `ltspec ui`
    server of the suite), for the tests of this module: they read from it, and the last one SIGKILLs it. Stopped
    (its whole process group) at the end. Yields (the process, its port, its output)."""
    port = free_port()
    log = trained_quickstart.folder / f"ui-{port}.log"
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "ltspec", "ui", "specs/quickstart.toml", "--port", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                  cwd=trained_quickstart.folder)
    try:
        for _ in range(1200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None, log.read_text()
                time.sleep(0.1)
        yield server, port, log
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)


@pytest.mark.slow
def test_ltspec_ui_prints_its_links_and_serves_every_run_on_one_page(ui_server, trained_quickstart):
    _, port, log = ui_server
    printed = log.read_text()
    assert f"all runs: http://127.0.0.1:{port}/#/experiments/" in printed and "workflowType=machine_learning" in printed
    assert "lottery vs reinit, imp at 87.5% train.lr=0.01: " in printed
    _, experiment, runs = experiment_runs(trained_quickstart)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/runs/search", method="POST",
        data=json.dumps({"experiment_ids": [experiment.experiment_id], "max_results": 1}).encode(),
        headers={"Content-Type": "application/json"})
    answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
    assert len(answer["runs"]) == len(runs) and "next_page_token" not in answer


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")
def test_a_browser_sees_every_stage_run_on_the_printed_link_without_a_click(ui_server, trained_quickstart):
    _, _, log = ui_server
    link = next(line.split(": ", 1)[1] for line in log.read_text().splitlines() if "all runs: " in line)
    page = subprocess.run([CHROMIUM, *BROWSER_FLAGS, "--window-size=1280,30000", "--virtual-time-budget=30000",
                           "--dump-dom", link],
                          capture_output=True, text=True, timeout=180).stdout
    _, _, runs = experiment_runs(trained_quickstart)
    missing = [run.info.run_name for run in runs if run.info.run_name not in page]
    assert not missing, f"the runs table does not show {missing}"
    assert DESCRIPTION in page
    assert "Sort: Run Name" in page and "undefined" not in page, "the link's sort key is one the UI knows"


@pytest.mark.slow
def test_the_ui_listens_on_loopback_only_and_a_killed_ui_takes_its_mlflow_server_with_it(ui_server):
    """Every socket `ltspec ui` and the server it started listen on is on 127.0.0.1; a SIGKILL of it runs no
    handler, yet that server must not listen on, orphaned. (Last in this module: it ends the shared server.)"""
    import psutil

    ui, port, _ = ui_server
    server = psutil.Process(ui.pid).children()
    assert server, "ltspec ui started no server"
    group = [psutil.Process(ui.pid), server[0], *server[0].children(recursive=True)]
    listening = {(connection.laddr.ip, connection.laddr.port) for process in group
                 for connection in process.net_connections("inet") if connection.status == psutil.CONN_LISTEN}
    assert ("127.0.0.1", port) in listening and {ip for ip, _ in listening} <= {"127.0.0.1", "::1"}, listening
    ui.kill()
    ui.wait()
    _, alive = psutil.wait_procs(group[1:], timeout=30)
    assert not alive, f"left running: {[process.cmdline() for process in alive]}"
