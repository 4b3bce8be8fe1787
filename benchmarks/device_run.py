"""The end-to-end half of benchmarks/device_check.sh: a real `ltspec run` on the device, checked, and packing.

    python benchmarks/device_run.py run   --device cuda [--quick]  # masks hold, R_p device == CPU, resume after a kill
    python benchmarks/device_run.py local --device cuda [--quick]  # local runner: 1, 2, 4, 8 ResNet-20 stages per GPU
    python benchmarks/device_run.py pack  --device cuda [--quick]  # Ray: 4 ResNet-20 stages one at a time vs packed

`run` trains a small CIFAR-shaped synthetic spec (ResNet-20: dense, one IMP round, the lottery arm, R_p) three
times: once whole, once SIGKILLed after its first checkpoint and run again; then checks that every arm's pruned
weights are exactly zero, that the measure stage's R_p (computed on the device) equals R_p recomputed on the CPU
from the stored weights, and compares the resumed run's final metrics with the whole run's (bit-identical on a
CPU; on a GPU only if its kernels are deterministic, so the largest difference is printed). Each line it prints
starts with `check` and ends with `ok` or `FAILED`; the exit status is the number of failures.

`local` trains 8 ResNet-20 stages (dense, seeds 0-7) on CIFAR-shaped synthetic data of CIFAR's batch size through
`run_local` at 1, 2, 4 and 8 stages per GPU (one GPU), printing stage-epochs per second and each packing's
speed-up, and checks that every packing's records (final metrics and every epoch's) equal one-at-a-time's: with
`resources.deterministic = true` they must be bit-identical; in the default mode the largest difference is
printed. Where the machine has several GPUs it also runs 4 stages per GPU on all of them, and counts the GPUs
on which nvidia-smi saw a worker. The data is a dataset plugin this script writes to a temporary folder (a
module and its entry point), so that every worker process finds it as a plugin's.
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


PACKED_SPEC = """\
name = "device-packing"
seeds = [{seeds}]

[data]
dataset = "cifarshaped"
batch_size = 128

[model]
arch = "resnet20"

[train]
epochs = {epochs}
lr = 0.05
channels_last = true

[resources]
deterministic = {deterministic}

[tracking]
uri = "sqlite:///{folder}/mlflow.db"

[storage]
root = "{folder}/store"
"""

DATA_PLUGIN = """\
from dataclasses import replace

from ltspec.data import load_synthetic
from ltspec.datasets import DatasetInfo


def load(entry, root, download, seed):
    made = load_synthetic(entry, root, download, seed, synthetic_size=({train}, {test}))
    return replace(made, info=entry)


DATA = DatasetInfo("cifarshaped", "image", 3, 32, 10, augmentable=True, downloadable=False,
                   loader="ltspec_device_data:load", train_size={train}, test_size={test})
"""


def install_data_plugin(folder: Path, train: int, test: int) -> None:
    """The `cifarshaped` dataset as a plugin: a module and a dist-info folder with its entry point, on the path of
    this process and of every process it starts (the workers' server)."""
    (folder / "ltspec_device_data.py").write_text(DATA_PLUGIN.format(train=train, test=test))
    info = folder / "ltspec_device_data-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ltspec-device-data\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[ltspec.datasets]\ncifarshaped = ltspec_device_data:DATA\n")
    sys.path.insert(0, str(folder))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))


def packed_run(folder: Path, *, seeds: int, epochs: int, deterministic: bool, device: str, workers: int,
               gpus: tuple[int, ...] | None) -> tuple[float, dict]:
    """Train the packing spec in a fresh store with `workers` stages per device; its wall time and records."""
    import io

    from rich.console import Console

    from ltspec.plan import compile_plan
    from ltspec.runners.local import run_local
    from ltspec.spec import load_spec
    from ltspec.store import Store

    folder.mkdir(parents=True)
    spec = folder / "spec.toml"
    spec.write_text(PACKED_SPEC.format(seeds=", ".join(map(str, range(seeds))), epochs=epochs,
                                       deterministic=str(deterministic).lower(), folder=folder.as_posix()))
    loaded = load_spec(spec)
    plan = compile_plan(loaded)
    start = time.perf_counter()
    summary = run_local(loaded, plan, device=device, workers=workers, gpus=gpus, console=Console(file=io.StringIO()))
    seconds = time.perf_counter() - start
    if not summary.ok:
        sys.exit(f"the packing run at {workers} per device failed: {summary.failed}")
    store = Store(folder / "store")
    return seconds, {stage.key: (store.record(stage.key)["metrics"], store.record(stage.key)["history"])
                     for stage in plan.stages}


def largest_difference(one: dict, other: dict) -> float:
    """The largest difference of a metric, final or of an epoch, between two runs' records of the same stages."""
    found = 0.0
    for key, (metrics, history) in one.items():
        their_metrics, their_history = other[key]
        found = max([found, *(abs(value - their_metrics[name]) for name, value in metrics.items())])
        for (_, row), (_, their_row) in zip(history, their_history, strict=True):
            found = max([found, *(abs(value - their_row[name]) for name, value in row.items())])
    return found


class GpuWatch:
    """The GPUs on which nvidia-smi sees a compute process, polled on a thread while a run goes on."""

    def __init__(self):
        import threading

        self.seen: set[str] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self.stop.wait(0.5):
            listed = subprocess.run(["nvidia-smi", "--query-compute-apps=gpu_uuid", "--format=csv,noheader"],
                                    capture_output=True, text=True)
            self.seen.update(line.strip() for line in listed.stdout.splitlines() if line.strip())

    def __enter__(self) -> "GpuWatch":
        self.thread.start()
        return self

    def __exit__(self, *error) -> None:
        self.stop.set()
        self.thread.join()


def local_check(device: str, quick: bool) -> int:
    """The local runner's packing on one GPU at 1, 2, 4 and 8 stages per GPU (1 and 2 on a CPU), its results
    against one at a time, and where there are several GPUs the spread over them."""
    import shutil

    import torch

    seeds, epochs, checked_epochs = (2, 2, 1) if quick else (8, 3, 2)
    packings = (1, 2) if device == "cpu" else (1, 2, 4, 8)
    gpus = None if device == "cpu" else (0,)
    failures = 0
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        install_data_plugin(folder, *((512, 128) if quick else (10_000, 2_000)))
        runs = {k: packed_run(folder / f"default{k}", seeds=seeds, epochs=epochs, deterministic=False,
                              device=device, workers=k, gpus=gpus) for k in packings}
        alone = runs[1][0]
        note = " (no GPU: the stages share the CPU cores, so this speed says nothing of a GPU's)" \
            if device == "cpu" else ""
        for k, (seconds, records) in runs.items():
            difference = largest_difference(runs[1][1], records)
            print(f"local runner, {k} ResNet-20 stage(s) per {'device' if device == 'cpu' else 'GPU'}: "
                  f"{seeds * epochs / seconds:.2f} stage-epochs/s ({seconds:.1f} s for {seeds} stages x {epochs} "
                  f"epochs), {alone / seconds:.2f}x one at a time{note}; records "
                  f"{'identical' if difference == 0 else f'differ by at most {difference:.2e}'}", flush=True)
        exact = {k: packed_run(folder / f"deterministic{k}", seeds=seeds, epochs=checked_epochs, deterministic=True,
                               device=device, workers=k, gpus=gpus) for k in (1, packings[-1])}
        difference = largest_difference(exact[1][1], exact[packings[-1]][1])
        failures += say(f"with resources.deterministic, {packings[-1]} per device gives one-at-a-time's records",
                        difference == 0.0, "bit-identical" if difference == 0 else f"differ by {difference:.2e}")
        count = torch.cuda.device_count() if device != "cpu" else 0
        if count > 1 and shutil.which("nvidia-smi"):
            with GpuWatch() as watch:
                seconds, _ = packed_run(folder / "spread", seeds=4 * count, epochs=epochs, deterministic=False,
                                        device=device, workers=4, gpus=None)
            failures += say(f"4 stages per GPU spread over the {count} GPUs", len(watch.seen) == count,
                            f"workers seen on {len(watch.seen)} GPUs; {4 * count * epochs / seconds:.2f} "
                            f"stage-epochs/s against {seeds * epochs / runs[4][0]:.2f} on one GPU")
        elif count <= 1:
            print("one device: the spread over several GPUs is not measured here")
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
    parser.add_argument("what", choices=["run", "local", "pack"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    failures = {"run": run_check, "local": local_check, "pack": pack_check}[args.what](args.device, args.quick)
    sys.exit(failures)


if __name__ == "__main__":
    main()
