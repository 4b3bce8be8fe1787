"""The store's contract: round trips, completion, atomic writes under a crash, unreadable checkpoints, claims."""

import hashlib
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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ltspec
from ltspec.store import Store, StoreError

KEY = "ab12cd34ef56"
RECORD = {"kind": "dense", "metrics": {"test_accuracy": 0.91}, "history": [[1, {"train_loss": 0.5}]], "artifacts": {}}
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
    store.complete(KEY, RECORD)
    trained = (store.stage_dir(KEY) / "trained.pt").read_bytes()
    record = {**RECORD, "checksums": {"trained.pt": {
        "size": len(trained), "sha256": hashlib.sha256(trained).hexdigest()}}}
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
    with pytest.raises(StoreError, match="trained.pt: simulated crash"):
        store.write_tensors(KEY, "trained", {"w": torch.randn(10)})
    with pytest.raises(StoreError, match="metrics.json: simulated crash"):
        store.write_json(KEY, "metrics", {"version": 2})
    with pytest.raises(StoreError, match="record.json: simulated crash"):
        store.complete(KEY, RECORD)
    monkeypatch.undo()

    assert not store.has(KEY, "trained") and not store.is_complete(KEY)
    assert store.read_json(KEY, "metrics") == {"version": 1}
    assert sorted(p.name for p in store.stage_dir(KEY).iterdir()) == ["metrics.json"]


KILLED_WRITER = """
import os, signal, sys
from ltspec.store import Store

os.replace = lambda source, destination: os.kill(os.getpid(), signal.SIGKILL)
Store(sys.argv[1]).complete(sys.argv[2], {"metrics": {}, "history": [], "artifacts": {}})
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

    store.complete(KEY, RECORD)
    assert store.record(KEY)["metrics"] == RECORD["metrics"]


def _train_once(root, key, log_path, barrier):
    """What a runner does with a stage: claim it, and train only if nobody finished it meanwhile."""
    store = Store(root)
    barrier.wait()
    with store.claim(key) as first:
        with open(log_path, "a") as log:
            log.write(f"enter {os.getpid()} {threading.get_ident()} {first}\n")
        if not store.is_complete(key):
            with open(log_path, "a") as log:
                log.write("train\n")
            time.sleep(0.4)
            store.complete(key, RECORD)
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
    first_holder, second_holder = events[0][1:3], events[3][1:3]
    assert events[2][1:] == first_holder and events[4][1:] == second_holder and first_holder != second_holder
    assert sorted([events[0][3], events[3][3]]) == ["False", "True"], "one claim alone is the stage's first"
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


# Integrity: the record vouches for its artifacts


def _completed(store):
    store.write_tensors(KEY, "trained", {"w": torch.randn(64, 64)})
    store.write_json(KEY, "mask_excluded", ["fc.bias"])
    store.save_checkpoint(KEY, {"epoch": 1})
    (store.stage_dir(KEY) / ".trained.pt.123.abc.tmp").write_bytes(b"half")
    store.complete(KEY, RECORD)
    return store.stage_dir(KEY) / "trained.pt"


def test_the_record_vouches_for_every_artifact_and_nothing_else(store):
    _completed(store)
    assert sorted(store.record(KEY)["checksums"]) == ["mask_excluded.json", "trained.pt"]
    assert store.is_complete(KEY) and store.verify_stage(KEY, full=True) == []


@pytest.mark.parametrize("content", [b"", b"{", b"\x00\xff garbage", b"{}", b"[]", b'{"metrics": {}}',
                                     b'{"metrics": {}, "history": [], "artifacts": {}, "checksums": {"a.pt": 3}}'])
def test_a_record_that_is_not_a_record_means_not_done_with_one_line_naming_it(store, caplog, content):
    path = _completed(store).with_name("record.json")
    path.write_bytes(content)
    assert not store.is_complete(KEY) and store.record(KEY) is None
    assert len(caplog.records) == 1 and str(path) in caplog.records[0].getMessage()
    assert [item.path for item in store.verify_stage(KEY)] == [path]


def test_a_truncated_artifact_means_not_done_and_is_written_again(store, caplog):
    path = _completed(store)
    os.truncate(path, path.stat().st_size // 2)
    assert not store.is_complete(KEY)
    assert f"{path}: " in caplog.text and "bytes, its stage's record vouches for" in caplog.text
    assert not store.has(KEY, "trained"), "a stage recomputed must not keep the damaged file"
    path.unlink()
    assert not store.is_complete(KEY) and "missing" in store.verify_stage(KEY)[0].reason


def test_changed_bytes_are_found_by_a_full_check_and_by_a_read_which_sets_the_file_aside(store):
    path = _completed(store)
    data = bytearray(path.read_bytes())
    data[-40] ^= 0xFF
    path.write_bytes(data)
    assert store.is_complete(KEY), "sizes alone are checked on every is_complete"
    assert [str(item) for item in store.verify_stage(KEY, full=True)] == [
        f"{path}: its content differs from the hash in its stage's record"]
    with pytest.raises(StoreError, match=f"{path} is damaged.*moved aside to .trained.pt.*damaged"):
        store.read_tensors(KEY, "trained")
    assert not path.exists() and not store.is_complete(KEY)
    assert [p.name for p in store.stage_dir(KEY).glob(".trained.pt.*.damaged")], "set aside, never deleted"


def test_verify_can_set_damaged_files_aside(store):
    path = _completed(store)
    reversed_bytes = path.read_bytes()[::-1]
    path.write_bytes(reversed_bytes)
    damage = store.verify_stage(KEY, full=True)
    assert store.is_complete(KEY)
    [aside] = store.set_aside(damage)
    assert aside.parent == path.parent and aside.name.startswith(".") and aside.read_bytes() == reversed_bytes
    assert not store.is_complete(KEY) and store.read_json(KEY, "mask_excluded") == ["fc.bias"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["trained.pt", "mask_excluded.json"]), data=st.data())
def test_no_damage_to_an_artifact_goes_unnoticed(tmp_path_factory, name, data):
    """Cut or change any byte of any artifact: the full check names the file, and a read never returns it."""
    store = Store(tmp_path_factory.mktemp("store"))
    path = _completed(store).with_name(name)
    original = path.read_bytes()
    if data.draw(st.booleans(), label="cut"):
        damaged = original[:data.draw(st.integers(0, len(original) - 1), label="kept")]
    else:
        at = data.draw(st.integers(0, len(original) - 1), label="at")
        damaged = original[:at] + bytes([original[at] ^ data.draw(st.integers(1, 255), label="xor")]) + original[at + 1:]
    path.write_bytes(damaged)
    assert [item.path for item in store.verify_stage(KEY, full=True)] == [path]
    read = store.read_tensors if name.endswith(".pt") else store.read_json
    with pytest.raises(StoreError, match="is damaged"):
        read(KEY, path.stem)
