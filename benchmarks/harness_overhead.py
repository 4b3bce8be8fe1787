"""ltspec's training harness against a bare loop in the GPU regime: a large state and short epochs.

On an H100 a VGG-16 CIFAR epoch takes 0.3-1 s while writing its 118 MB checkpoint took 0.3 s, so a checkpoint per
epoch on the critical path cost 30-100% of the wall time. This benchmark recreates that ratio on any device: full
VGG-16 (state plus momentum, ~118 MB) trained for epochs of a few small batches. It times

- bare: forward, loss, backward, SGD step, nothing else;
- harness: `ltspec.training.fit` with the stage harness's `StoreCheckpoints` (default policy: a host snapshot per
  epoch, a background write at most every `storage.checkpoint_seconds` = 300 s) and `EpochLog`;
- every-epoch: the same with `checkpoint_seconds = 0` (a background write after every epoch);
- inline: the old path, `Store.save_checkpoint` of every epoch on the training thread (shown for reference).

Variants alternate epoch blocks within each repetition; each ratio is the median over repetitions of the variant's
median epoch time over the bare loop's. Two clocks: wall time, and the training thread's own CPU time (with one
intra-op thread all of training runs on it), which a machine shared with other processes leaves nearly untouched:
it counts what the harness adds to the critical path, not what the neighbours take. A third figure needs no
baseline at all: the time spent inside the checkpoint call, as a share of the epoch (1 + share is the ratio the
checkpoints alone cause). Goal: harness ≤ 1.05.

    python benchmarks/harness_overhead.py [--device cuda] [--epochs 6] [--batches 3] [--batch-size 16] [--repeats 3]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ltspec.nets import build_model
from ltspec.plan import compile_plan
from ltspec.spec import load_spec
from ltspec.stages.context import Context
from ltspec.stages.harness import EpochLog, StoreCheckpoints
from ltspec.store import Store
from ltspec.files import write_atomically
from ltspec.recipe import ConstantSchedule, Recipe, Sgd
from ltspec.training import fit, make_optimizer

SPEC = """\
name = "harness-overhead"

[data]
dataset = "synthetic"

[model]
arch = "vgg16"

[train]
epochs = {epochs}
lr = 0.01

[storage]
root = "{root}"
checkpoint_seconds = {seconds}
"""


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batches_for(device: torch.device, count: int, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(size, 3, 32, 32, generator=generator).to(device),
             torch.randint(0, 10, (size,), generator=generator).to(device)) for _ in range(count)]


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.thread_time()


def bare(model, batches, epochs: int, device: torch.device) -> list[tuple[float, float]]:
    optimizer = make_optimizer(model.parameters(), 0.01, Sgd(weight_decay=0.0))
    times = []
    for _ in range(epochs):
        wall, cpu = clocks()
        for x, y in batches:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        synchronize(device)
        times.append((time.perf_counter() - wall, time.thread_time() - cpu))
    return times


class Timed:
    """Epoch times of `fit`, read at each epoch's end (after the checkpoint call, which is part of the cost)."""

    def __init__(self, checkpoints, device: torch.device):
        self.checkpoints, self.device = checkpoints, device
        self.times: list[tuple[float, float]] = []
        self.saving: list[float] = []
        self.last = clocks()

    def load(self):
        return None

    def save(self, epoch, state, *, final):
        synchronize(self.device)
        before = time.perf_counter()
        self.checkpoints.save(epoch, state, final=final)
        synchronize(self.device)
        now = clocks()
        self.saving.append(now[0] - before)
        self.times.append((now[0] - self.last[0], now[1] - self.last[1]))
        self.last = now


class Inline:
    """The old policy: every epoch's checkpoint written on the training thread, fsynced like an artifact."""

    def __init__(self, store: Store, key: str):
        self.path = store.stage_dir(key) / "checkpoint.pt"

    def save(self, epoch, state, *, final):
        if not final:
            write_atomically(self.path, lambda file: torch.save(state(), file))


def harness(model, batches, epochs: int, device: torch.device, root: Path,
            seconds: float | None) -> list[tuple[float, float]]:
    spec = root / f"spec-{seconds}.toml"
    spec.write_text(SPEC.format(epochs=epochs + 1, root=root / "store", seconds=seconds if seconds is not None else 0))
    plan = compile_plan(load_spec(spec))
    stage = plan.trunks[0]
    ctx = Context(store=Store(root / "store"), device=device, stages={s.key: s for s in plan.stages})
    recipe = Recipe(epochs + 1, 0.01, Sgd(weight_decay=0.0), ConstantSchedule(kind="constant"))
    log = EpochLog(lambda rows: None)
    if seconds is None:
        timed = Timed(Inline(ctx.store, stage.key), device)
        fit(model, lambda e: iter(batches), {}, recipe, steps_per_epoch=len(batches), hooks=[log], checkpoints=timed,
            epochs=epochs + 1)
    else:
        with StoreCheckpoints(stage, ctx, before_write=log.flush) as checkpoints:
            timed = Timed(checkpoints, device)
            fit(model, lambda e: iter(batches), {}, recipe, steps_per_epoch=len(batches), hooks=[log],
                checkpoints=timed, epochs=epochs + 1)
    ctx.store.clear_checkpoint(stage.key)
    epochs_timed = timed.times[1:-1]  # the first includes setting up; the last is `final`, never checkpointed
    share = statistics.median(timed.saving[1:-1]) / statistics.median(w for w, _ in epochs_timed)
    return [(w, c, share) for w, c in epochs_timed]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = build_model("vgg16", num_classes=10, in_channels=3, input_size=32, seed=0).to(device)
    state = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    batches = batches_for(device, args.batches, args.batch_size)
    bare(model, batches, 2, device)  # warm-up: allocator, kernels
    variants = {"harness (default policy)": 300.0, "every epoch, background": 0.0, "every epoch, inline + fsync": None}
    epoch_times: dict[str, list[tuple[float, ...]]] = {"bare": [], **{name: [] for name in variants}}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            epoch_times["bare"].append(medians(bare(model, batches, args.epochs, device)))
            for name, seconds in variants.items():
                epoch_times[name].append(medians(harness(model, batches, args.epochs, device, Path(folder), seconds)))
    print(f"VGG-16 state {state / 2**20:.0f} MiB (weights; momentum doubles it in a checkpoint), {args.batches} "
          f"batches of {args.batch_size} per epoch, {args.device}, {args.threads} threads, {args.repeats} repeats")
    for name, values in epoch_times.items():
        line = f"{name:28s} epoch wall {statistics.median(v[0] for v in values):.3f} s, thread CPU " \
               f"{statistics.median(v[1] for v in values):.3f} s"
        if name != "bare":
            wall, cpu = [statistics.median(mine[i] / base[i] for mine, base in zip(values, epoch_times["bare"]))
                         for i in (0, 1)]
            line += f" | ratio to bare: wall {wall:.3f}, thread CPU {cpu:.3f} | in the checkpoint call " \
                    f"{100 * statistics.median(v[2] for v in values):.1f}% of the epoch"
        print(line)


def medians(times: list[tuple[float, ...]]) -> tuple[float, ...]:
    return tuple(statistics.median(t[i] for t in times) for i in range(len(times[0])))


if __name__ == "__main__":
    main()
