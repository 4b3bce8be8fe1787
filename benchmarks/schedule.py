"""The local runner's scheduler on the whole paper, on a simulated clock: makespan against its lower bound.

    python benchmarks/schedule.py [--specs specs/paper]

The plan is the combined plan of every spec in the folder (`ltspec plan specs/paper/`: 60 dense trunks, 5,235
stages, 416,250 epochs). The clock runs `ltspec.runners.schedule.simulate`, which fills free slots with the same
`Frontier.take` / `choose` the local runner calls, on machines of 1 to 16 GPUs. A stage takes the slots of one GPU
its share asks for (`ltspec.runners.slots`: a quarter for ResNet-20 and MobileNet-V2, the whole GPU for VGG-11)
and lasts its epochs times its architecture's epoch time (EPOCH_SECONDS, one stage alone on a GPU; slowed by
PACKED_SLOWDOWN when it shares the GPU with others) plus STAGE_SECONDS. The lower bound of the makespan is the
larger of the work over the slots (slot-seconds: each stage's slots times its time) and the longest path.

Three ranks are compared: first in, first out in plan order (the baseline); critical path first measured in epochs
(what the local runner uses: it knows epochs, not epoch times); critical path first measured in simulated seconds.
The last line is the worst ratio of the runner's rank over the machines.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ltspec.plan import Stage
from ltspec.plan.combine import combine
from ltspec.plan.compile import compile_plan
from ltspec.runners.common import architecture
from ltspec.runners.schedule import critical_path, critical_path_first, epochs_cost, plan_order, simulate
from ltspec.runners.slots import gpu_share, units
from ltspec.spec import load_spec

# One stage alone on an H100-class GPU, fp32 with channels_last, batch 128, CIFAR resident on the device: 391 steps
# and a test pass. Assumed, not measured (no GPU was lent; benchmarks/device_check.sh measures ResNet-20's):
# ResNet-20 and MobileNet-V2 are bound by kernel launches (~6 and ~12 ms a step), VGG-11 by its convolutions.
EPOCH_SECONDS = {"resnet20": 2.5, "mobilenetv2": 5.0, "vgg11": 2.0}
# A small-net stage packed four to a GPU trains its epochs 1.6x slower than alone: four of them together are 2.5x
# one alone (packing efficiency 2.5 / 4 = 62.5%; MIT LLSC measured 2.5x for ResNet-18, 10x for LeNet, arXiv
# 2410.22254). A stage that has its GPU to itself (a whole-GPU share, or one slot per GPU) runs at its alone speed.
PACKED_SLOWDOWN = 1.6
STAGE_SECONDS = 5.0  # every stage: start, parents' weights read and checked, artifacts and MLflow run written
# (GPUs, slots per GPU): 1, 8 and 64 slots of a whole GPU each (every stage alone on its GPU), then quarter-GPU
# slots (the default shares) on 1, 2, 8 and 16 GPUs: 4, 8, 32 and 64 slots
MACHINES = [(1, 1), (8, 1), (64, 1), (1, 4), (2, 4), (8, 4), (16, 4)]


def paper_plan(folder: Path) -> tuple[list[Stage], dict[str, str]]:
    """The combined plan's stages, in plan order, and each stage's architecture."""
    combined = combine([compile_plan(load_spec(path)) for path in sorted(folder.glob("*.toml"))], folder.name).plan
    stages = {stage.key: stage for stage in combined.stages}
    return list(combined.stages), {key: architecture(stage, stages) for key, stage in stages.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=Path, default=Path("specs/paper"))
    args = parser.parse_args()
    stages, arch = paper_plan(args.specs)
    print(f"plan: {len(stages)} stages, {sum(s.epochs for s in stages)} epochs ({args.specs})")
    print("epoch seconds alone: " + ", ".join(f"{a} {s}" for a, s in EPOCH_SECONDS.items()) +
          f"; packed x{PACKED_SLOWDOWN}; {STAGE_SECONDS} s per stage")
    print("makespan / bound for each rank; hours of the bound (work / slots, longest path) and of the runner's rank")
    print(f"{'machine':>14} {'slots':>5} {'work/slots':>10} {'path':>5} {'FIFO':>6} {'CP ep':>6} {'CP s':>6} "
          f"{'makespan h':>10} {'GPU-hours':>9}")
    worst = 0.0
    for gpus, per_gpu in MACHINES:
        devices = {f"cuda:{index}": per_gpu for index in range(gpus)}
        need = {stage.key: units(gpu_share(arch[stage.key], None), per_gpu) for stage in stages}

        def duration(stage: Stage) -> float:
            alone = need[stage.key] == per_gpu
            return stage.epochs * EPOCH_SECONDS[arch[stage.key]] * (1.0 if alone else PACKED_SLOWDOWN) + STAGE_SECONDS

        spread = sum(need[stage.key] * duration(stage) for stage in stages) / (gpus * per_gpu)
        path = max(critical_path(stages, duration).values())
        bound, ratios = max(spread, path), {}
        for name, rank in (("fifo", plan_order(stages)), ("epochs", critical_path_first(stages, epochs_cost)),
                           ("seconds", critical_path_first(stages, duration))):
            result = simulate(stages, rank, duration, lambda stage, device: need[stage.key], devices)
            ratios[name] = result.makespan / bound
            if name == "epochs":
                makespan = result.makespan
        worst = max(worst, ratios["epochs"])
        print(f"{f'{gpus} GPU x {per_gpu}':>14} {gpus * per_gpu:>5} {spread / 3600:>10.1f} {path / 3600:>5.1f} "
              f"{ratios['fifo']:>6.3f} {ratios['epochs']:>6.3f} {ratios['seconds']:>6.3f} {makespan / 3600:>10.1f} "
              f"{makespan * gpus / 3600:>9.0f}")
    print(f"schedule: worst makespan/bound = {worst:.3f}")


if __name__ == "__main__":
    main()
