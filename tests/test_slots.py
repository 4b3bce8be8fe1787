"""Where the local runner's stages go on a GPU machine: slots per GPU from the stages' shares, the slots a stage
takes, the memory cap of its process, the GPUs `--gpus` and `--device` choose, the GPU settings every stage runs
under. Plain arithmetic, so it is tested here without a GPU; benchmarks/device_check.sh runs it on one."""

import subprocess
import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from conftest import ROOT, ltspec
from ltspec.plan import compile_plan
from ltspec.runners.local import layout
from ltspec.runners.slots import (CONTEXT_HEADROOM_BYTES, Layout, Slot, gpu_indices, gpu_share, memory_fraction,
                                  parse_gpus, slots, stages_per_gpu, units)
from ltspec.spec import load_spec

GIB = 2**30


def test_eight_gpus_at_a_quarter_share_are_32_slots_spread_over_the_gpus():
    found = slots([f"cuda:{index}" for index in range(8)], stages_per_gpu([0.25]))
    assert len(found) == 32
    assert [slot.index for slot in found] == list(range(32))
    assert [slot.device for slot in found[:9]] == [f"cuda:{index}" for index in range(8)] + ["cuda:0"]
    assert {device: sum(slot.device == device for slot in found) for device in {s.device for s in found}} == \
        {f"cuda:{index}": 4 for index in range(8)}


def test_stages_per_gpu_is_what_the_smallest_share_fits():
    assert stages_per_gpu([0.25, 1.0]) == 4
    assert stages_per_gpu([0.3]) == 3
    assert stages_per_gpu([0.1]) == 10  # 1 / 0.1 is 10.000000000000002
    assert stages_per_gpu([1.0, 2.0]) == 1  # a stage trains on one device
    assert stages_per_gpu([]) == 1


def test_the_default_share_is_the_one_ray_asks_for():
    assert gpu_share("resnet20", None) == 0.25 and gpu_share("mobilenetv2", None) == 0.25
    assert gpu_share("vgg11", None) == 1.0
    assert gpu_share("vgg11", 0.5) == 0.5


def test_a_stage_takes_the_slots_its_share_needs_on_one_gpu():
    assert units(0.25, 4) == 1
    assert units(1.0, 4) == 4  # a large net beside small ones: the whole GPU
    assert units(0.4, 4) == 2  # never less than its share
    assert units(0.3, 3) == 1
    assert units(2.0, 4) == 4  # at most one GPU
    assert units(0.25, 1) == 1


def test_memory_cap_is_the_share_less_a_headroom_per_slot():
    h100 = 80 * GIB
    assert memory_fraction(1, 4, h100) == pytest.approx(0.25 - 1 / 80)
    assert memory_fraction(4, 4, h100) == pytest.approx(1 - 4 / 80)  # a whole-GPU stage among idle workers
    assert memory_fraction(1, 8, h100, headroom_bytes=2 * GIB) == pytest.approx(0.125 - 2 / 80)
    assert memory_fraction(1, 1, h100) is None  # alone on its GPU: no cap


@given(st.integers(1, 16), st.integers(8, 192))
def test_caps_and_headrooms_of_a_full_gpu_never_exceed_it(per_device, gib):
    """Whatever mix of stages fills a GPU, their caps and every process's headroom fit in its memory."""
    total = gib * GIB
    try:
        cap = memory_fraction(1, per_device, total)
    except ValueError:
        assert per_device * CONTEXT_HEADROOM_BYTES >= total
        return
    if cap is None:
        assert per_device == 1
        return
    assert per_device * (cap * total + CONTEXT_HEADROOM_BYTES) == pytest.approx(total)
    assert memory_fraction(per_device, per_device, total) == pytest.approx(per_device * cap)


def test_too_many_stages_for_a_small_gpu_is_refused_with_what_to_change():
    with pytest.raises(ValueError, match="16 stages per GPU do not fit on a GPU of 8.0 GiB.*gpu_share"):
        memory_fraction(1, 16, 8 * GIB)


def test_gpus_option_and_device_choose_the_gpus():
    assert parse_gpus("0,2") == (0, 2)
    assert gpu_indices("cuda", None, 4) == (0, 1, 2, 3)
    assert gpu_indices("cuda", (0, 2), 4) == (0, 2)
    assert gpu_indices("cuda:1", None, 4) == (1,)
    assert gpu_indices("cuda:1", (1,), 4) == (1,)
    assert gpu_indices("cpu", None, 0) == ()
    for text in ("", "a", "0,,1", "-1"):
        with pytest.raises(ValueError, match="like `--gpus 0,2`"):
            parse_gpus(text)
    with pytest.raises(ValueError, match="torch sees 2 GPUs"):
        gpu_indices("cuda", (0, 2), 2)
    with pytest.raises(ValueError, match="each may be named once"):
        gpu_indices("cuda", (1, 1), 2)
    with pytest.raises(ValueError, match="name different GPUs"):
        gpu_indices("cuda:1", (0, 2), 4)
    with pytest.raises(ValueError, match="the run is on `cpu`"):
        gpu_indices("cpu", (0,), 0)


def test_layout_of_a_mixed_plan_packs_small_nets_and_gives_large_ones_a_gpu(monkeypatch):
    """generators.toml trains ResNet-20, MobileNet-V2 and VGG-11: four slots per GPU, a VGG-11 stage takes all
    four; `--workers 2` puts two stages on each GPU whatever their net."""
    loaded = load_spec(ROOT / "specs" / "paper" / "generators.toml")
    plan = compile_plan(loaded)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    placed = layout(loaded, plan, torch.device("cuda"), gpus=(0, 2))
    assert placed.per_device == {"cuda:0": 4, "cuda:2": 4}
    needs = {placed.need(stage, "cuda:0") for stage in plan.stages if stage.labels.get("sweep.model.arch") == "vgg11"}
    assert needs == {4}
    assert {placed.need(stage, "cuda:2") for stage in plan.stages
            if stage.labels.get("sweep.model.arch") == "resnet20"} == {1}
    two = layout(loaded, plan, torch.device("cuda"), workers=2)
    assert two.per_device == {f"cuda:{index}": 2 for index in range(8)}
    assert {two.need(stage, "cuda:5") for stage in plan.stages} == {1}
    assert layout(loaded, plan, torch.device("cuda:3")).per_device == {"cuda:3": 4}
    assert layout(loaded, plan, torch.device("cpu"), workers=3) == Layout(tuple(Slot(i, "cpu") for i in range(3)))


def test_gpus_on_a_cpu_run_is_one_clear_error_before_anything_runs(tmp_path):
    result = ltspec("run", "--device", "cpu", "--gpus", "0", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--gpus names GPUs, but the run is on `cpu`" in result.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "results").exists()


def test_gpu_settings_are_set_for_the_run_and_restored_and_cost_nothing_by_default():
    """Deterministic algorithms only where asked (turning them on or off imports torch._inductor, seconds that a
    worker would pay at every exit); cuDNN's benchmark mode off either way; the process's settings restored."""
    check = ("import sys, torch\n"
             "from ltspec.runners.common import reproducible\n"
             "torch.backends.cudnn.benchmark = True\n"
             "with reproducible(False):\n"
             "    assert not torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()\n"
             "assert torch.backends.cudnn.benchmark and 'torch._inductor' not in sys.modules\n"
             "with reproducible(True):\n"
             "    assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic\n"
             "    assert torch.is_deterministic_algorithms_warn_only_enabled()\n"
             "assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic\n")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_the_device_checks_packing_step_runs_on_the_cpu():
    """The packing step of benchmarks/device_check.sh, at its quick size on the CPU: no GPU is lent here, so this is
    what keeps the script a GPU session runs from breaking unseen (its dataset plugin once built a `Dataset` the
    way an older version of ltspec did)."""
    result = subprocess.run([sys.executable, "benchmarks/device_run.py", "local", "--device", "cpu", "--quick"],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "records identical" in result.stdout and "bit-identical ... ok" in result.stdout, result.stdout
