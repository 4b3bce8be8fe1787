"""VGG-16 / CIFAR-10 epoch time with our loop, fp32 against bf16 + channels_last, against the H100 compute floor.

    python benchmarks/gpu_epoch.py [--device cuda] [--images 50000] [--epochs 3] [--arch vgg16] [--compile]

CIFAR-shaped random uint8 images stand in for the real training split (the cost of an epoch does not depend on
the pixels). Each setting trains `--epochs` epochs after one warm-up epoch through `ltspec.training.train_epoch`
with the on-device loader (crop + flip) and an 80%-sparse mask enforced after every step, exactly as an arm trains.
The floor: VGG-16 needs about 0.31 GFLOP per 32x32 image forward, so ~0.94 GFLOP per training image and ~47 TFLOP
per epoch, about 0.12 s at an H100's ~400 dense bf16 TFLOP/s actually reachable. On a CPU, pass --images 512.
"""

import argparse
import statistics
import time

import torch

from ltspec.data import Split
from ltspec.loader import DeviceLoader
from ltspec.nets import build_model, prunable_tensors
from ltspec.pruning import magnitude_mask
from ltspec.recipe import Sgd, StepSchedule
from ltspec.training import compile_model, make_optimizer, make_scheduler, train_epoch

H100_FLOOR_SECONDS = 0.12


def epoch_seconds(args, precision: str, channels_last: bool) -> tuple[float, float]:
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=generator),
                  torch.randint(0, 10, (args.images,), generator=generator))
    loader = DeviceLoader(split, batch_size=128, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26), augment=True,
                          shuffle=True, seed=0, device=device, channels_last=channels_last)
    model = build_model(args.arch, num_classes=10, seed=0).to(device)
    weights = prunable_tensors(model)
    mask = magnitude_mask({n: w.detach() for n, w in weights.items()}, 0.8).to(device)
    optimizer = make_optimizer(model.parameters(), 0.05, Sgd(weight_decay=5e-4))
    scheduler = make_scheduler(optimizer, StepSchedule(milestones=[80, 120]), epochs=150,
                               steps_per_epoch=len(loader))
    runner = compile_model(model) if args.compile else model
    times = []
    for epoch in range(args.epochs + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        train_epoch(runner, loader.epoch(epoch), optimizer, scheduler, after_step=[lambda: mask.apply_(weights)],
                    precision=precision, channels_last=channels_last)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times[1:])
    return seconds, args.images / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--arch", default="vgg16")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    if args.device.startswith("cuda"):
        print(f"device: {torch.cuda.get_device_name()}")
    scale = 50_000 / args.images
    baseline = None
    for precision, channels_last in (("fp32", False), ("bf16", True)):
        seconds, rate = epoch_seconds(args, precision, channels_last)
        baseline = baseline or seconds
        print(f"{args.arch} {precision:4} channels_last={channels_last!s:5} {seconds * scale:7.2f} s per 50k epoch  "
              f"{rate:9.0f} images/s  vs fp32 {baseline / seconds:5.2f}x  vs H100 floor "
              f"{seconds * scale / H100_FLOOR_SECONDS:6.1f}x")


if __name__ == "__main__":
    main()
