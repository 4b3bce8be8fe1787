"""What many tests share: the `ltspec` command as a subprocess, and specs written into a test's folder."""

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "specs" / "quickstart.toml"


def ltspec(*args: str, cwd: Path = ROOT, **kwargs) -> subprocess.CompletedProcess:
    """Run `ltspec ARGS` in `cwd` (the repository by default) and wait for it, capturing its output as text."""
    return subprocess.run([sys.executable, "-m", "ltspec", *args], capture_output=True, text=True, cwd=cwd, **kwargs)


@pytest.fixture(autouse=True, scope="session")
def own_cache(tmp_path_factory) -> None:
    """The session's own cache folder (where ltspec keeps its MLflow store template), for it and its
    subprocesses: the tests neither read nor write the user's `~/.cache`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


def write_spec(folder: Path, template: str, name: str = "spec.toml", **values) -> Path:
    """Write `template` (str.format fields; `{folder}` is the folder, for tracking and storage paths) to
    `folder/name`, so that every store, database and report of the test lives in its own folder."""
    path = folder / name
    path.write_text(template.format(folder=folder.as_posix(), **values))
    return path


TICKETS_SPEC = """\
name = "tiny-tickets"
description = "two IMP rounds on digits at two learning rates"
seeds = [0]

[data]
dataset = "digits"
batch_size = 128

[model]
arch = "mlp"

[train]
epochs = 1
lr = 0.05

[sweep]
"train.lr" = [0.05, 0.1]

[masks.imp]
kind = "imp"
rate = 0.5
rounds = 2

[arms]
lottery = {{ start = "init" }}
reinit = {{ start = "reinit" }}

[measure]
p = [0.2]
pairs = [["init", "trained"]]

[tracking]
uri = "sqlite:///{folder}/mlflow.db"
log_weights = true

[storage]
root = "{folder}/results"
"""


@pytest.fixture(scope="session")
def trained_tickets(tmp_path_factory) -> Path:
    """A tiny spec with two IMP rounds, lottery and reinit arms at two learning rates, run once for every test
    that reads tickets or MLflow runs; the run passes `seeds=[0]` as an override, so that its runs record one. What
    the run printed is kept beside the spec, in `run.log`."""
    folder = tmp_path_factory.mktemp("tickets")
    spec = write_spec(folder, TICKETS_SPEC)
    ran = ltspec("run", str(spec), "seeds=[0]", "--device", "cpu", cwd=folder)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    (folder / "run.log").write_text(ran.stdout + ran.stderr)
    return spec


def default_signals(command: list[str]) -> list[str]:
    """`command`, started with SIGINT, SIGTERM and SIGHUP at their defaults whatever this process ignores (pytest
    in the background ignores SIGINT, under nohup SIGHUP, and a child inherits the ignore): a small Python resets
    them and execs it. (A `preexec_fn` would do it too, but is unsafe in a process with threads, as Ray's driver.)"""
    return [sys.executable, "-c", RESET_SIGNALS, *command]


RESET_SIGNALS = """import os, signal, sys
for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(signum, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])
"""


@contextmanager
def children_get_default_signals() -> Iterator[None]:
    """The block's child processes start with SIGINT, SIGTERM and SIGHUP at their defaults whatever this process
    ignores (see `default_signals`), for children this process does not exec itself: a Ray cluster's GCS and
    raylet, whose workers would otherwise ignore SIGINT too, the signal by which `ray.cancel` interrupts a task.
    (A handler of this process is reset to the default in an exec'd child; only an ignore is inherited.)"""
    ignored = [signum for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
               if signal.getsignal(signum) is signal.SIG_IGN]
    for signum in ignored:
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
    try:
        yield
    finally:
        for signum in ignored:
            signal.signal(signum, signal.SIG_IGN)
