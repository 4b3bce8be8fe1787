"""The store's contract: round trips, completion, atomic writes under a crash, unreadable checkpoints, claims."""

import json
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import ltspec
from ltspec.store import Store

KEY = "ab12cd34ef56"
OTHER_KEY = "ab99"
PACKAGE_PARENT = Path(ltspec.__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "store")


def test_stage_dir_fans_out_by_key_prefix(store):
    assert store.stage_dir(KEY) == store.root / "ab" / KEY


@pytest.mark.parametrize("key", ["", "a", "AB12", "ab/../cd", "ab12 ", "../ab"])
def test_rejects_keys_that_are_not_lowercase_hex(store, key):
    with pytest.raises(ValueError, match="stage key"):
        store.stage_dir(key)


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "../escape", "record", "checkpoint"])
def test_rejects_names_that_could_escape_or_collide(store, name):
    with pytest.raises(ValueError, match="artifact name"):
        store.write_json(KEY, name, {})


def test_tensors_round_trip(store):
    tensors = {
        "conv.weight": torch.randn(4, 3, 3, 3),
        "mask": torch.rand(10) > 0.5,
        "counts": torch.arange(5, dtype=torch.int64),
        "half": torch.randn(7).to(torch.bfloat16),
    }
    path = store.write_tensors(KEY, "init", tensors)
    assert path == store.stage_dir(KEY) / "init.pt"
    loaded = store.read_tensors(KEY, "init")
    assert loaded.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype
        assert torch.equal(loaded[name], tensor)
        assert loaded[name].device.type == "cpu"


def test_tensors_are_read_with_weights_only(store):
    path = store.stage_dir(KEY) / "rogue.pt"
    path.parent.mkdir(parents=True)
    torch.save({"callable": print}, path)
    with pytest.raises(pickle.UnpicklingError, match="[Ww]eights only"):
        store.read_tensors(KEY, "rogue")


def test_json_round_trip_is_canonical(store):
    obj = {"b": [1, 2.5, None], "a": {"y": True, "x": "text"}}
    path = store.write_json(KEY, "metrics", obj)
    assert store.read_json(KEY, "metrics") == obj
    assert path.read_text() == json.dumps(obj, sort_keys=True, indent=2) + "\n"


def test_has_sees_both_kinds_of_artifact_under_their_own_stage(store):
    assert not store.has(KEY, "mask") and not store.has(KEY, "metrics")
    store.write_tensors(KEY, "mask", {"w": torch.ones(2)})
    store.write_json(KEY, "metrics", {"accuracy": 0.5})
    assert store.has(KEY, "mask") and store.has(KEY, "metrics")
    assert not store.has(OTHER_KEY, "mask")


def test_completion_is_the_record(store):
    assert not store.is_complete(KEY) and store.record(KEY) is None
    store.write_tensors(KEY, "trained", {"w": torch.zeros(3)})
    assert not store.is_complete(KEY), "artifacts alone do not complete a stage"
    record = {"kind": "dense", "epochs": 3, "metrics": {"test_accuracy": 0.91}}
    store.complete(KEY, record)
    assert store.is_complete(KEY) and store.record(KEY) == record
    assert (store.stage_dir(KEY) / "record.json").read_text() == json.dumps(record, sort_keys=True, indent=2) + "\n"
    assert not store.is_complete(OTHER_KEY)


def _trained_sgd_state():
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    model(torch.randn(8, 4)).square().mean().backward()
    optimizer.step()
    optimizer.zero_grad()
    return model, optimizer


def test_checkpoint_round_trip_resumes_training_exactly(store):
    model, optimizer = _trained_sgd_state()
    rng = torch.get_rng_state()
    draw_after_checkpoint = torch.randn(8, 4)
    state = {
        "epoch": 3,
        "best_accuracy": 0.625,
        "history": [0.5, 0.6, 0.625],
        "nested": {"masks": {"fc": torch.ones(2, 4, dtype=torch.bool)}, "rounds": [1, 2]},
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng,
    }
    store.save_checkpoint(KEY, state)
    loaded = store.load_checkpoint(KEY)

    assert loaded["epoch"] == 3 and loaded["best_accuracy"] == 0.625 and loaded["history"] == [0.5, 0.6, 0.625]
    assert loaded["nested"]["rounds"] == [1, 2]
    assert torch.equal(loaded["nested"]["masks"]["fc"], torch.ones(2, 4, dtype=torch.bool))
    assert loaded["rng"].dtype == torch.uint8

    resumed_model = torch.nn.Linear(4, 2)
    resumed_model.load_state_dict(loaded["model"])
    resumed_optimizer = torch.optim.SGD(resumed_model.parameters(), lr=1.0)
    resumed_optimizer.load_state_dict(loaded["optimizer"])
    torch.set_rng_state(loaded["rng"])
    assert torch.equal(torch.randn(8, 4), draw_after_checkpoint)
    for net, opt in ((model, optimizer), (resumed_model, resumed_optimizer)):
        torch.manual_seed(0)
        net(torch.randn(8, 4)).square().mean().backward()
        opt.step()
    for original, resumed in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(original, resumed)


def test_checkpoint_is_replaced_then_cleared(store):
    assert store.load_checkpoint(KEY) is None
    store.save_checkpoint(KEY, {"epoch": 1})
    store.save_checkpoint(KEY, {"epoch": 2})
    assert store.load_checkpoint(KEY) == {"epoch": 2}
    store.clear_checkpoint(KEY)
    assert store.load_checkpoint(KEY) is None
    store.clear_checkpoint(KEY)


@pytest.mark.parametrize("kept_fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_checkpoint_counts_as_absent(store, kept_fraction):
    store.save_checkpoint(KEY, {"epoch": 4, "model": {"w": torch.randn(256, 256)}, "rng": torch.get_rng_state()})
    path = store.stage_dir(KEY) / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * kept_fraction)])
    with pytest.warns(RuntimeWarning, match="unreadable checkpoint"):
        assert store.load_checkpoint(KEY) is None


def test_failed_write_leaves_nothing_under_the_final_name(store, monkeypatch):
    store.write_json(KEY, "metrics", {"version": 1})

    def crash(source, destination):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        store.write_tensors(KEY, "trained", {"w": torch.randn(10)})
    with pytest.raises(OSError, match="simulated crash"):
        store.write_json(KEY, "metrics", {"version": 2})
    with pytest.raises(OSError, match="simulated crash"):
        store.complete(KEY, {"kind": "dense"})
    monkeypatch.undo()

    assert not store.has(KEY, "trained") and not store.is_complete(KEY)
    assert store.read_json(KEY, "metrics") == {"version": 1}
    assert sorted(p.name for p in store.stage_dir(KEY).iterdir()) == ["metrics.json"]


KILLED_WRITER = """
import os, signal, sys
from ltspec.store import Store

os.replace = lambda source, destination: os.kill(os.getpid(), signal.SIGKILL)
Store(sys.argv[1]).complete(sys.argv[2], {"kind": "dense"})
"""


def test_process_killed_while_completing_leaves_the_stage_incomplete(store):
    """SIGKILL skips every cleanup: the temp file stays, and the store must read as if the write never began."""
    store.write_tensors(KEY, "trained", {"w": torch.ones(3)})
    environment = {**os.environ, "PYTHONPATH": str(PACKAGE_PARENT)}
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(store.root), KEY], env=environment)
    assert killed.returncode == -signal.SIGKILL

    leftovers = [p.name for p in store.stage_dir(KEY).iterdir() if p.name != "trained.pt"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".record.json.") and leftovers[0].endswith(".tmp")
    assert not store.is_complete(KEY) and store.record(KEY) is None
    assert torch.equal(store.read_tensors(KEY, "trained")["w"], torch.ones(3))

    store.complete(KEY, {"kind": "dense"})
    assert store.record(KEY) == {"kind": "dense"}


def _train_once(root, key, log_path, barrier):
    """What a runner does with a stage: claim it, and train only if nobody finished it meanwhile."""
    store = Store(root)
    barrier.wait()
    with store.claim(key):
        with open(log_path, "a") as log:
            log.write(f"enter {os.getpid()} {threading.get_ident()}\n")
        if not store.is_complete(key):
            with open(log_path, "a") as log:
                log.write("train\n")
            time.sleep(0.4)
            store.complete(key, {"kind": "dense"})
        with open(log_path, "a") as log:
            log.write(f"leave {os.getpid()} {threading.get_ident()}\n")


def _run_in_processes(target, args):
    """Forked, not spawned: the workers touch only files, and a spawned worker would spend seconds importing torch."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    workers = [context.Process(target=target, args=(*args, barrier)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0]


def _run_in_threads(target, args):
    barrier = threading.Barrier(2)
    workers = [threading.Thread(target=target, args=(*args, barrier)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)


@pytest.mark.parametrize("run_workers", [_run_in_processes, _run_in_threads], ids=["processes", "threads"])
def test_claim_is_exclusive_and_the_stage_trains_once(store, tmp_path, run_workers):
    log_path = tmp_path / "log.txt"
    run_workers(_train_once, (store.root, KEY, log_path))

    events = [line.split() for line in log_path.read_text().splitlines()]
    assert [event[0] for event in events] == ["enter", "train", "leave", "enter", "leave"], events
    first_holder, second_holder = events[0][1:], events[3][1:]
    assert events[2][1:] == first_holder and events[4][1:] == second_holder and first_holder != second_holder
    assert store.is_complete(KEY)


def test_claims_on_different_stages_do_not_wait_for_each_other(store):
    acquired = threading.Event()

    def claim_other_stage():
        with store.claim(OTHER_KEY):
            acquired.set()

    with store.claim(KEY):
        other = threading.Thread(target=claim_other_stage)
        other.start()
        assert acquired.wait(timeout=10)
        other.join()
