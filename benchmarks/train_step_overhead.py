"""What `train_epoch` costs per step over a bare PyTorch loop on the same net and data.

`train_epoch` does more than forward, loss, backward and step: it enforces an 80%-sparse mask after every step
(one fused foreach multiply, as `Mask.apply_` does), steps a per-step LR scheduler and accumulates loss and
accuracy on the device. This measures whether that extra work stays within the goal of 5% per step. The two
loops alternate within each repetition so that drift in machine load hits both alike, and the ratio is the
median of the per-repetition ratios, each taken between two runs close in time.

    PYTHONPATH=. python benchmarks/train_step_overhead.py [--device cuda] [--precision bf16] [--channels-last]
"""

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from ltspec.recipe import Sgd, StepSchedule
from ltspec.training import make_optimizer, make_scheduler, train_epoch

LR, OPTIMIZER = 0.01, Sgd(momentum=0.9, weight_decay=5e-4)
SCHEDULE = StepSchedule(milestones=[80, 120])


def conv_bn(inputs: int, outputs: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU()
    )


def small_cifar_net(classes: int = 10) -> nn.Sequential:
    """A VGG-style CIFAR net, a few layers of the widths ResNet-20 uses: small enough that overhead would show."""
    return nn.Sequential(
        conv_bn(3, 16),
        conv_bn(16, 16),
        conv_bn(16, 32, stride=2),
        conv_bn(32, 32),
        conv_bn(32, 64, stride=2),
        conv_bn(64, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, classes),
    )


def random_mask_enforcement(model: nn.Module, sparsity: float, generator: torch.Generator):
    """An after-step action keeping a random mask of each conv and linear weight, as `Mask.apply_` does."""
    weights = [module.weight for module in model.modules() if isinstance(module, (nn.Conv2d, nn.Linear))]
    # empty_like keeps each weight's device, dtype and memory format (channels_last included).
    masks = [torch.empty_like(w).copy_(torch.rand(w.shape, generator=generator) >= sparsity) for w in weights]

    def enforce():
        with torch.no_grad():
            torch._foreach_mul_(weights, masks)

    enforce()
    return enforce


def bare_loop(model, batches, optimizer, precision):
    model.train()
    for x, y in batches:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def seconds(run, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--sparsity", type=float, default=0.8)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, help="CPU threads; 1 steadies timings on a shared machine")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format

    torch.manual_seed(0)
    bare_model = small_cifar_net().to(device, memory_format=memory_format)
    ltspec_model = copy.deepcopy(bare_model)
    batches = [
        (
            torch.randn(args.batch_size, 3, 32, 32, device=device).to(memory_format=memory_format),
            torch.randint(10, (args.batch_size,), device=device),
        )
        for _ in range(args.steps)
    ]
    bare_optimizer = make_optimizer(bare_model.parameters(), LR, OPTIMIZER)
    ltspec_optimizer = make_optimizer(ltspec_model.parameters(), LR, OPTIMIZER)
    scheduler = make_scheduler(ltspec_optimizer, SCHEDULE, epochs=args.repeats + 1, steps_per_epoch=args.steps)
    enforce_mask = random_mask_enforcement(ltspec_model, args.sparsity, torch.Generator().manual_seed(0))

    def run_bare():
        bare_loop(bare_model, batches, bare_optimizer, args.precision)

    def run_ltspec():
        train_epoch(
            ltspec_model,
            batches,
            ltspec_optimizer,
            scheduler,
            after_step=[enforce_mask],
            precision=args.precision,
            channels_last=args.channels_last,
        )

    run_bare(), run_ltspec()
    bare_times, ltspec_times = [], []
    for repeat in range(args.repeats):
        pair = [(run_bare, bare_times), (run_ltspec, ltspec_times)]
        for run, times in pair if repeat % 2 == 0 else pair[::-1]:
            times.append(seconds(run, device) / args.steps)

    bare, ltspec = statistics.median(bare_times), statistics.median(ltspec_times)
    ratio = statistics.median(l / b for l, b in zip(ltspec_times, bare_times))
    print(
        f"device {device}, batch {args.batch_size}, {args.steps} steps x {args.repeats} repeats, "
        f"{args.precision}, channels_last={args.channels_last}, mask sparsity {args.sparsity}, "
        f"{torch.get_num_threads()} CPU threads"
    )
    print(f"bare loop    {1e3 * bare:8.3f} ms/step (median)")
    print(f"train_epoch  {1e3 * ltspec:8.3f} ms/step (median)")
    print(f"ratio        {ratio:8.3f}  (median of the per-repeat ratios; goal <= 1.05)")


if __name__ == "__main__":
    main()
