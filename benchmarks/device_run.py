"""The end-to-end half of benchmarks/device_check.sh: a real `ltspec run` on the device, checked, and Ray packing.

    python benchmarks/device_run.py run  --device cuda [--quick]   # masks hold, R_p device == CPU, resume after a kill
    python benchmarks/device_run.py pack --device cuda [--quick]   # Ray: 4 ResNet-20 stages one at a time vs packed

`run` trains a small CIFAR-shaped synthetic spec (ResNet-20: dense, one IMP round, the lottery arm, R_p) three
times: once whole, once SIGKILLed after its first checkpoint and run again; then checks that every arm's pruned
weights are exactly zero, that the measure stage's R_p (computed on the device) equals R_p recomputed on the CPU
from the stored weights, and compares the resumed run's final metrics with the whole run's (bit-identical on a
CPU; on a GPU only if its kernels are deterministic, so the largest difference is printed). Each line it prints
starts with `check` and ends with `ok` or `FAILED`; the exit status is the number of failures.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """\
name = "device-check"
seeds = {seeds}

[data]
dataset = "synthetic"
batch_size = 32

[model]
arch = "resnet20"

[train]
epochs = {epochs}
lr = 0.05

{masks}
[tracking]
uri = "sqlite:///{folder}/mlflow.db"

[storage]
root = "{folder}/store"
checkpoint_seconds = 0
"""

MASKS = """\
[masks.imp]
kind = "imp"
rate = 0.5
rounds = 1

[arms]
lottery = { start = "init" }

[measure]
p = [0.2, 0.5]
pairs = [["init", "trained"], ["init*mask", "lottery"]]
"""


def write(folder: Path, *, seeds: str, epochs: int, masks: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "spec.toml"
    path.write_text(SPEC.format(seeds=seeds, epochs=epochs, masks=masks, folder=folder.as_posix()))
    return path


def ltspec(spec: Path, *options: str, wait: bool = True):
    command = [sys.executable, "-m", "ltspec", "run", str(spec), *options]
    process = subprocess.Popen(command, cwd=spec.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait:
        return process
    output = process.communicate()[0]
    if process.returncode != 0:
        sys.exit(f"`{' '.join(command)}` failed:\n{output}")
    return output


def say(name: str, good: bool, detail: str = "") -> int:
    print(f"check {name}{': ' + detail if detail else ''} ... {'ok' if good else 'FAILED'}", flush=True)
    return 0 if good else 1


def run_check(device: str, quick: bool) -> int:
    import torch

    from ltspec.plan import compile_plan
    from ltspec.spec import load_spec
    from ltspec.stages import Context, execute
    from ltspec.kinds.train import FINAL
    from ltspec.stages.weights import load_mask
    from ltspec.store import Store

    epochs = 3 if quick else 8
    failures = 0
    with tempfile.TemporaryDirectory() as folder:
        whole, killed = Path(folder) / "whole", Path(folder) / "killed"
        spec, spec_killed = (write(f, seeds="[0]", epochs=epochs, masks=MASKS) for f in (whole, killed))
        start = time.perf_counter()
        ltspec(spec, "--device", device)
        print(f"ltspec run on {device}: {time.perf_counter() - start:.1f} s")
        plan = compile_plan(load_spec(spec))
        store = Store(whole / "store")
        ctx = Context(store=store, device=torch.device("cpu"), stages={s.key: s for s in plan.stages})

        for stage in (s for s in plan.stages if s.kind.name == "train"):
            final, mask = store.read_tensors(stage.key, FINAL), load_mask(ctx, stage.parents[-1])
            leaks = sum(int(final[name][~keep].abs().sum() != 0) for name, keep in mask.items())
            failures += say(f"mask holds in {stage.describe()}", leaks == 0, f"{leaks} tensors with a pruned "
                            "weight that is not zero" if leaks else f"{len(mask)} masked tensors")

        for stage in (s for s in plan.stages if s.kind.name == "measure"):
            on_device, on_cpu = store.record(stage.key)["metrics"], execute(stage, ctx).metrics
            failures += say(f"R_p on {device} equals R_p on the CPU", on_device == on_cpu,
                            ", ".join(f"{k} {v:.6f}" for k, v in sorted(on_device.items())))

        victim = ltspec(spec_killed, "--device", device, wait=False)
        checkpoint = Store(killed / "store").stage_dir(plan.trunks[0].key) / "checkpoint.pt"
        while not checkpoint.exists() and victim.poll() is None:
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        ltspec(spec_killed, "--device", device)
        resumed_store = Store(killed / "store")
        differences = [abs(store.record(s.key)["metrics"][name] - value)
                       for s in plan.stages for name, value in resumed_store.record(s.key)["metrics"].items()]
        identical = max(differences, default=0.0) == 0.0
        failures += say("resume after SIGKILL", identical or device != "cpu",
                        "bit-identical" if identical else f"largest metric difference {max(differences):.2e} "
                        "(GPU kernels are not deterministic)")
    return failures


def pack_check(device: str, quick: bool) -> int:
    """Wall time of 4 ResNet-20 stages on Ray with a whole GPU each (one at a time) against a quarter each."""
    epochs = 4 if quick else 30
    times = {}
    with tempfile.TemporaryDirectory() as folder:
        for share in ("1", "0.25"):
            spec = write(Path(folder) / share, seeds="[0, 1, 2, 3]", epochs=epochs, masks="")
            start = time.perf_counter()
            ltspec(spec, "--runner", "ray", "--gpu-share", share)
            times[share] = time.perf_counter() - start
    note = "" if device != "cpu" else " (no GPU: both runs share the CPUs the same way)"
    print(f"Ray, 4 ResNet-20 stages x {epochs} epochs: gpu_share 1 {times['1']:.1f} s, gpu_share 0.25 "
          f"{times['0.25']:.1f} s: packing speed-up {times['1'] / times['0.25']:.2f}x{note}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["run", "pack"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    failures = (run_check if args.what == "run" else pack_check)(args.device, args.quick)
    sys.exit(failures)


if __name__ == "__main__":
    main()
