"""Checkpoints off the critical path: the background writer, the time policy, the last finished epoch kept on an
interrupt, a torn checkpoint falling back, and resume after an interrupt giving the uninterrupted result."""

import threading
from pathlib import Path

import pytest
import torch

from conftest import write_spec
from ltspec.checkpoints import Policy, copy_to_host
from ltspec.plan import compile_plan
from ltspec.spec import load_spec
from ltspec.stages import Context, run_stage
from ltspec.store import Store

SPEC = """\
name = "checkpoints"

[data]
dataset = "digits"
batch_size = 256

[model]
arch = "mlp"

[train]
epochs = 4
lr = 0.05

[storage]
checkpoint_seconds = {seconds}
root = "{folder}/store"
"""


class Recorder:
    """A write function that records what it wrote, on which thread, and can be held until released."""

    def __init__(self, hold: bool = False):
        self.written: list[tuple[int, torch.Tensor, str]] = []
        self.released = threading.Event()
        self.started = threading.Event()
        if not hold:
            self.released.set()
        self.overlapping = 0
        self.active = 0

    def __call__(self, state: dict) -> None:
        self.active += 1
        self.overlapping = max(self.overlapping, self.active)
        self.started.set()
        released = self.released.wait(30)
        self.written.append((state["epoch"], state["w"].clone(), threading.current_thread().name, released))
        self.active -= 1


def state_of(weights: torch.Tensor, epoch: int):
    return lambda: {"epoch": epoch, "w": weights, "optimizer": {"state": {0: {"m": weights * 2}}, "lr": [0.1]}}


def test_the_write_runs_on_another_thread_while_training_goes_on():
    write = Recorder(hold=True)
    policy = Policy(write, every=1, seconds=0)
    weights = torch.zeros(4)
    policy.epoch_done(1, state_of(weights, 1))
    assert write.started.wait(30)
    weights += 1  # the next epoch trains while epoch 1 is being written
    write.released.set()
    policy.stop(keep_latest=False)
    [(epoch, written, thread, released)] = write.written
    assert epoch == 1 and released and thread != threading.current_thread().name
    assert torch.equal(written, torch.zeros(4)), "the write saw a later epoch's weights"


def test_a_snapshot_taken_during_a_write_does_not_touch_the_one_being_written():
    write = Recorder(hold=True)
    policy = Policy(write, every=1, seconds=0)
    weights = torch.zeros(4)
    policy.epoch_done(1, state_of(weights, 1))
    assert write.started.wait(30)
    policy.seconds = 3600  # epoch 2 is only snapshotted, into the spare buffers
    weights += 1
    policy.epoch_done(2, state_of(weights, 2))
    write.released.set()
    policy.stop(keep_latest=True)
    assert [(epoch, w.tolist()) for epoch, w, _, _ in write.written] == [(1, [0.0] * 4), (2, [1.0] * 4)]
    assert write.overlapping == 1, "two writes ran at once"


@pytest.mark.parametrize(("seconds", "every", "expected"), [(0, 1, [1, 2, 3, 4, 5]), (0, 2, [2, 4]),
                                                            (3600, 1, []), (3600, 2, [])])
def test_writes_follow_the_epoch_cadence_and_the_time_budget(seconds, every, expected):
    write = Recorder()
    policy = Policy(write, every=every, seconds=seconds)
    for epoch in range(1, 6):
        policy.epoch_done(epoch, state_of(torch.full((2,), float(epoch)), epoch))
    policy.stop(keep_latest=False)
    assert [epoch for epoch, *_ in write.written] == expected


@pytest.mark.parametrize(("every", "kept"), [(1, 5), (2, 4)])
def test_stopping_early_writes_the_last_finished_epoch_once(every, kept):
    write = Recorder()
    policy = Policy(write, every=every, seconds=3600)
    for epoch in range(1, 6):
        policy.epoch_done(epoch, state_of(torch.full((2,), float(epoch)), epoch))
    policy.stop(keep_latest=True)
    policy.stop(keep_latest=True)
    assert [(epoch, w.tolist()) for epoch, w, _, _ in write.written] == [(kept, [float(kept)] * 2)]


def test_a_failed_write_surfaces_in_the_training_thread():
    def fail(state):
        raise OSError("disk full")

    policy = Policy(fail, every=1, seconds=0)
    policy.epoch_done(1, state_of(torch.zeros(2), 1))
    with pytest.raises(OSError, match="disk full"):
        policy.stop(keep_latest=False)


def test_host_copies_reuse_their_buffers_and_keep_plain_values():
    state = {"w": torch.ones(3), "nested": [torch.zeros(2), 7, "text"], "pair": (1.5, None)}
    first = copy_to_host(state)
    state["w"] += 1
    second = copy_to_host(state, first)
    assert second["w"] is first["w"] and second["w"].tolist() == [2.0] * 3
    assert second["w"] is not state["w"] and second["nested"][1:] == [7, "text"] and second["pair"] == (1.5, None)


def _stage_and_store(folder: Path, seconds: float):
    loaded = load_spec(write_spec(folder, SPEC, seconds=seconds))
    plan = compile_plan(loaded)
    return plan.trunks[0], Store(folder / "store"), plan


def _context(store: Store, plan, on_epoch=None) -> Context:
    return Context(store=store, device=torch.device("cpu"), stages={s.key: s for s in plan.stages},
                   on_epoch=on_epoch)


class Interrupt:
    def __init__(self, at: int):
        self.at = at

    def __call__(self, stage, epoch, values):
        if epoch == self.at:
            raise KeyboardInterrupt


def interrupted_at_epoch_3(folder: Path, seconds: float):
    """The dense stage trained whole in one store, and interrupted in its third epoch in another."""
    (folder / "a").mkdir(), (folder / "b").mkdir()
    dense, reference_store, plan = _stage_and_store(folder / "a", seconds)
    record, _ = run_stage(dense, _context(reference_store, plan))
    _, store, plan = _stage_and_store(folder / "b", seconds)
    with pytest.raises(KeyboardInterrupt):
        run_stage(dense, _context(store, plan, on_epoch=Interrupt(at=3)))
    return dense, plan, record, reference_store, store


def test_an_interrupt_keeps_the_last_finished_epoch_and_resume_is_bit_identical(tmp_path):
    dense, plan, record, reference_store, store = interrupted_at_epoch_3(tmp_path, seconds=3600)
    assert store.load_checkpoint(dense.key)["epoch"] == 2, "the time policy skipped it, the interrupt must not"
    resumed, ran = run_stage(dense, _context(store, plan, on_epoch=Interrupt(at=2)))
    assert ran and resumed["metrics"] == record["metrics"] and resumed["history"] == record["history"]
    trained, reference = store.read_tensors(dense.key, "trained"), reference_store.read_tensors(dense.key, "trained")
    assert all(torch.equal(trained[name], reference[name]) for name in reference)
    assert store.load_checkpoint(dense.key) is None


def test_a_torn_checkpoint_falls_back_to_a_fresh_start(tmp_path):
    dense, plan, record, _, store = interrupted_at_epoch_3(tmp_path, seconds=0)
    path = store.stage_dir(dense.key) / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.warns(RuntimeWarning, match="unreadable checkpoint"):
        resumed, _ = run_stage(dense, _context(store, plan))
    assert resumed["metrics"] == record["metrics"]
