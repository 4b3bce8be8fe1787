"""Both runners train every stage on `resources.cpus` intra-op threads, so their CPU numbers agree whatever torch's
default is in the process (on more than one core, LeNet-300-100's losses differ between one and two threads)."""

import os

import pytest
import torch
from rich.console import Console

from conftest import write_spec
from ltspec.plan import compile_plan
from ltspec.runners.local import run_local
from ltspec.spec import load_spec
from ltspec.store import Store

SPEC = """\
name = "threads"

[data]
dataset = "digits"
batch_size = 64

[model]
arch = "lenet300100"

[train]
epochs = 2
lr = 0.01

[resources]
cpus = 1

[storage]
root = "{folder}/store"
"""


def _dense_record(folder, default_threads: int) -> dict:
    loaded = load_spec(write_spec(folder, SPEC))
    plan = compile_plan(loaded)
    torch.set_num_threads(default_threads)
    assert run_local(loaded, plan, device="cpu", console=Console(quiet=True), track=False).ok
    assert torch.get_num_threads() == default_threads, "the runner left its thread count behind"
    return Store(folder / "store").record(plan.trunks[0].key)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: torch's default is already one thread")
def test_the_local_runner_trains_on_the_specs_threads_whatever_the_process_default(tmp_path):
    before = torch.get_num_threads()
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    try:
        one, two = _dense_record(tmp_path / "one", 1), _dense_record(tmp_path / "two", 2)
    finally:
        torch.set_num_threads(before)
    assert one["metrics"] == two["metrics"] and one["history"] == two["history"]
