"""What many tests share: the `ltspec` command as a subprocess; specs written into a test's folder, with one template
for the tiny spec that the end-to-end tests train; the quickstart trained once for the tests that read it; how the
tests spread over pytest-xdist workers; and what a resumed run trained, as its checkpoint and MLflow rows show."""

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hypothesis import settings
from mlflow import MlflowClient

from ltspec.plan import Plan, Stage, compile_plan
from ltspec.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
# No deadline on a hypothesis example: a deadline is a timed assertion, and on a loaded 2-core runner with two
# pytest-xdist workers an example that takes a millisecond alone can take hundreds.
settings.register_profile("ltspec", deadline=None)
settings.load_profile("ltspec")
QUICKSTART = ROOT / "specs" / "quickstart.toml"


# Test modules that share one pytest-xdist worker. `--dist loadscope` (pyproject's addopts) runs each module's tests on
# one worker, so that its module-scoped fixtures are built once; these modules join into one scope each: the Ray
# tests, so that one Ray cluster runs at a time, and the tests that read the quickstart's one trained store
# (`trained_quickstart`, session-scoped: built once per worker that asks for it).
SHARED_WORKER = {"test_ray_runner.py": "ray", "test_multinode.py": "ray",
                 "test_tickets.py": "trained quickstart", "test_mlflow_ui.py": "trained quickstart"}
# The longest scopes, longest first (seconds of `--durations=0` on 2 cores: ray 140, test_run 124, test_slurm 99,
# test_hardening 60, trained quickstart 58, test_plugins 42, test_tracking 40, test_preflight 39, test_analyses 35,
# test_workers 32, test_slots 31, of about 800 in all), handed out first, so that none starts late and keeps one
# worker busy after the others are done; the rest follow in xdist's order (most tests first).
LONGEST_FIRST = ["ray", "test_run.py", "test_slurm.py", "test_hardening.py", "trained quickstart", "test_plugins.py",
                 "test_tracking.py", "test_preflight.py", "test_analyses.py", "test_workers.py", "test_slots.py"]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's `loadscope` with `SHARED_WORKER`'s modules joined and `LONGEST_FIRST` first. (Not its
    `loadgroup` and `xdist_group` marks: with pytest 9.2 they are silently ignored, pytest-xdist issue #1386.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedWorkers(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = Path(nodeid.split("::", 1)[0]).name
            return SHARED_WORKER.get(module, module if module in LONGEST_FIRST else super()._split_scope(nodeid))

        def _assign_work_unit(self, node) -> None:
            first = next((scope for scope in LONGEST_FIRST if scope in self.workqueue), None)
            if first is not None:
                self.workqueue.move_to_end(first, last=False)
            super()._assign_work_unit(node)

    return SharedWorkers(config, log)


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


def toml_key(name: str) -> str:
    """A TOML key: bare where TOML allows it, quoted otherwise."""
    return name if name.replace("-", "").replace("_", "").isalnum() else json.dumps(name)


def toml_value(value, newlines: bool = False) -> str:
    """TOML for a value, arrays spread over lines when `newlines`, with a comment between elements."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        gap = ",  # note\n  " if newlines else ", "
        return "[" + gap.join(toml_value(item, newlines) for item in value) + "]"
    return "{" + ", ".join(f"{toml_key(name)} = {toml_value(item)}" for name, item in value.items()) + "}"


def write_spec(folder: Path, template: str, name: str = "spec.toml", **values) -> Path:
    """Write `template` (str.format fields; `{folder}` is the folder, for tracking and storage paths) to
    `folder/name`, so that every store, database and report of the test lives in its own folder."""
    path = folder / name
    path.write_text(template.format(folder=folder.as_posix(), **values))
    return path


IMP_AND_ONESHOT = """\
[masks.imp]
kind = "imp"
rate = 0.5
rounds = 2

[masks.oneshot]
kind = "oneshot"
sparsities = [0.7]
"""
THREE_ARMS = """\
lottery = { start = "init" }
reinit = { start = "reinit" }
finetune = { start = "trained" }"""
TINY_SPEC = """\
name = "{name}"
seeds = {seeds}

[data]
dataset = "digits"
batch_size = {batch_size}
augmentation = "{augmentation}"

[model]
arch = "{arch}"

[train]
epochs = {epochs}
lr = {lr}
{train}
{sweep}
{masks}
[arms]
{arms}

[measure]
{measure}
{resources}
[tracking]
uri = "{uri}"
{tracking}
[storage]
root = "{root}"
checkpoint_seconds = {checkpoint_seconds}
"""
# The tiny run of test_run.py: seconds of training on a CPU, every stage kind, two mask generators, three arms.
TINY_DEFAULTS = {
    "name": "tiny-run", "seeds": "[0]", "batch_size": 128, "augmentation": "standard", "arch": "mlp", "epochs": 2,
    "lr": 0.05, "train": 'schedule = { kind = "step", milestones = [1], gamma = 0.5 }', "sweep": "",
    "masks": IMP_AND_ONESHOT, "arms": THREE_ARMS,
    "measure": 'p = [0.1, 0.2]\npairs = [["init", "trained"], ["init*mask", "finetune"], ["reinit*mask", "finetune"], '
               '["finetune", "init"]]',
    "resources": "", "uri": "sqlite:///{folder}/mlflow.db", "tracking": "", "root": "{folder}/store",
    "checkpoint_seconds": 0,
}


def tiny_spec(folder: Path | None = None, **fields) -> str:
    """The text of the tiny spec on the digits that the end-to-end tests train (one template, `TINY_SPEC`): the
    fields given replace `TINY_DEFAULTS` (TOML text; `masks`, `arms` and `measure` are whole tables' lines), and
    `{folder}` in them becomes `folder`, for the tracking store and the store root."""
    text = TINY_SPEC.format(**{**TINY_DEFAULTS, **fields})
    return text if folder is None else text.replace("{folder}", folder.as_posix())


def write_tiny_spec(folder: Path, file: str = "spec.toml", **fields) -> Path:
    """`tiny_spec(folder, **fields)` written to `folder/file`, where every store of the test then lives."""
    path = folder / file
    path.write_text(tiny_spec(folder, **fields))
    return path


@dataclass(frozen=True)
class TrainedQuickstart:
    """A folder holding `specs/quickstart.toml` and, beside it, what its run made: `mlflow.db` and the store
    `results/` (the quickstart's paths are relative to the working directory, this folder)."""

    folder: Path
    spec: Path
    overrides: tuple[str, ...]

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.folder}/mlflow.db"

    def plan(self) -> Plan:
        """The quickstart's whole plan: both seeds and both learning rates, of which one point is trained."""
        return compile_plan(load_spec(self.spec, list(self.overrides)))

    def trained(self) -> list[Stage]:
        """The stages the run trained: seed 0 at lr 0.01."""
        return [stage for stage in self.plan().stages
                if stage.labels["seed"] == 0 and stage.labels["sweep.train.lr"] == 0.01]


@pytest.fixture(scope="session")
def trained_quickstart(tmp_path_factory) -> TrainedQuickstart:
    """The shipped quickstart where the README's walk after it starts: `specs/quickstart.toml` in a folder of its own
    with its seed 0 at lr 0.01 trained (every ticket, run and link the walk reads), run once by `ltspec run` for
    the ticket, README and MLflow UI tests, which read it. The override `tracking.log_weights=true` (no part of a
    stage's key) gives train runs their final weights as artifacts, and every run the override as a tag."""
    folder = tmp_path_factory.mktemp("quickstart")
    (folder / "specs").mkdir()
    spec = folder / "specs" / "quickstart.toml"
    shutil.copy(QUICKSTART, spec)
    overrides = ("tracking.log_weights=true",)
    ran = ltspec("run", "specs/quickstart.toml", *overrides, "--only", "seed=0", "--only", "lr=0.01", "--device", "cpu",
                 cwd=folder)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return TrainedQuickstart(folder, spec, overrides)


def checkpoint_epoch(path: Path) -> int:
    """The epoch a stage's checkpoint file holds, read as the plain torch file it is: not through
    `Store.load_checkpoint`, whose part in resuming is what the tests that call this check."""
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"]


def assert_rerun_resumed(uri: str, experiment: str, key: str, epochs: int, rerun_started: float,
                         resumed_from: int) -> None:
    """The rerun started at `rerun_started` (a `time.time()`) trained stage `key` on from its checkpoint's epoch
    `resumed_from`, as its `resumed_from_epoch` row says (one that started over logs none), and the stage's MLflow run
    holds each of its `epochs` epochs (steps of `train_loss`) once: the rerun logged the epochs after its checkpoint
    and after the last one the stopped attempt logged (an attempt logs its rows just before each checkpoint, so a
    stop between the two leaves one epoch logged past the checkpoint: trained again, not logged twice)."""
    from ltspec.stages.harness import RESUMED_FROM

    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    (run,) = client.search_runs([experiment_id], f"tags.`ltspec.stage_key` = '{key}'")
    resumed = [(row.step, row.value) for row in client.get_metric_history(run.info.run_id, RESUMED_FROM)
               if row.timestamp >= rerun_started * 1000]
    assert resumed == [(resumed_from, resumed_from)], f"the rerun did not resume from epoch {resumed_from}: {resumed}"
    rows = client.get_metric_history(run.info.run_id, "train_loss")
    before = [row.step for row in rows if row.timestamp < rerun_started * 1000]
    after = sorted(row.step for row in rows if row.timestamp >= rerun_started * 1000)
    assert sorted(before + after) == list(range(1, epochs + 1)), f"an epoch missing or logged twice: {before} {after}"
    assert after == list(range(max(resumed_from, *before, 0) + 1, epochs + 1)), (resumed_from, before, after)


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
