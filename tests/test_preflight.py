"""Looking before running: a missing dataset stops `ltspec run` before anything is estimated, run or logged,
and the work is estimated (and confirmed when it is more than a day on a CPU)."""

import os
import socket

import pytest

from conftest import QUICKSTART, ltspec, write_spec
from ltspec.preflight import DAY, Estimate, duration

CIFAR_SPEC = """\
name = "needs-cifar"
seeds = [0]

[data]
dataset = "cifar10"
root = "{folder}/data"
download = {download}
batch_size = 16  # the estimate times steps of at most a batch: small ones keep it short

[model]
arch = "{arch}"

[train]
epochs = {epochs}
lr = 0.1

[tracking]
uri = "sqlite:///{folder}/mlflow.db"

[storage]
root = "{folder}/store"
"""


@pytest.mark.slow
def test_a_missing_dataset_is_one_error_naming_the_folder_and_nothing_is_run_or_logged(tmp_path):
    spec = write_spec(tmp_path, CIFAR_SPEC, arch="resnet20", epochs=2, download="false")
    result = ltspec("run", str(spec), "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "estimate:" not in result.stdout, "timed training steps of a run that cannot start"
    message = " ".join(result.stderr.split())
    assert "nothing was run" in message and str(tmp_path / "data") in message and "download = true" in message
    assert result.stderr.count("cifar10 was not found") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "store").exists()


def through_proxy(port: int) -> dict[str, str]:
    """The environment with every HTTPS connection going through a proxy on this machine's `port`, as urllib (which
    downloads) and the host check before a run both go: what the network looks like is then up to the test."""
    env = {key: value for key, value in os.environ.items() if key.lower() not in ("https_proxy", "no_proxy")}
    return {**env, "https_proxy": f"http://127.0.0.1:{port}", "HTTPS_PROXY": f"http://127.0.0.1:{port}"}


@pytest.mark.slow
def test_more_than_a_day_on_a_cpu_asks_first_and_a_no_runs_nothing(tmp_path):
    """The dataset is to be downloaded and its host answers (a proxy that listens): the question comes before the
    download, and a no fetches nothing."""
    spec = write_spec(tmp_path, CIFAR_SPEC, arch="vgg11", epochs=3000, download="true")
    with socket.socket() as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen()
        result = ltspec("run", str(spec), "--device", "cpu", cwd=tmp_path, input="n\n",
                        env=through_proxy(proxy.getsockname()[1]))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "3000 epochs to train" in result.stdout and "days on cpu" in result.stdout
    assert "GPU work" in result.stdout and "Start it on the CPU anyway?" in result.stdout
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize("yes", [pytest.param(True, marks=pytest.mark.slow), False], ids=["yes", "asked"])
def test_offline_a_download_is_one_paragraph_before_any_question_and_nothing_is_written(tmp_path, yes):
    """Offline, as urllib sees it: every HTTPS connection goes through a proxy that refuses. `ltspec run` says so in
    one paragraph naming the folder and the flag, exits 2, before the estimate and the question a long CPU run asks
    (a user who would answer no still learns that CIFAR is missing), and writes nothing, not even data/."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        refusing = probe.getsockname()[1]  # closed again: a connection there is refused
    spec = write_spec(tmp_path, CIFAR_SPEC, arch="vgg11", epochs=3000, download="true")
    result = ltspec("run", str(spec), "--device", "cpu", *(["--yes"] if yes else []), cwd=tmp_path, input="n\n",
                    env=through_proxy(refusing))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "estimate:" not in result.stdout and "Start it on the CPU anyway?" not in result.stdout
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert str(tmp_path / "data") in result.stderr and "data.download = false" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["spec.toml"]


def test_plan_estimate_prints_the_epochs_and_the_time(tmp_path):
    result = ltspec("plan", str(QUICKSTART), "--estimate", "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("estimate:"))
    assert "768 epochs to train, about" in line and "on cpu" in line and "lenet300100 768 epochs" in line


@pytest.mark.parametrize("seconds, text", [(42, "42 s"), (600, "10 min"), (3 * 3600, "3.0 h"), (3 * DAY, "3.0 days")])
def test_durations_read_naturally(seconds, text):
    assert duration(seconds) == text


def test_an_estimate_with_an_unknown_dataset_size_says_so():
    estimate = Estimate("cpu", 10, None, {"tinynet": (10, None)})
    assert estimate.describe() == "10 epochs to train, unknown time on cpu, one stage at a time: tinynet 10 epochs"
