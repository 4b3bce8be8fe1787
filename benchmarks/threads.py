"""Intra-op threads and OpenMP's wait policy, for a small net and a large one: the measurements behind the policy.

ltspec trains every stage on `resources.cpus` intra-op threads (default 1) and sets `OMP_WAIT_POLICY=PASSIVE`
unless the user set it. This times a training epoch in a fresh process per setting (the wait policy must be set
before torch starts OpenMP), the settings alternating within each round:

- LeNet-300-100 on the digits (batch 64, the quickstart's net): 1 thread, all cores with PASSIVE, all cores with
  OpenMP's default (spin, then sleep);
- VGG-16 on CIFAR-shaped batches (a few batches of 32): the same three.

Each figure is the median over rounds of the child's median epoch; ratios are against one thread.

    python benchmarks/threads.py [--rounds 3] [--epochs 4]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def child(net: str, threads: int, epochs: int) -> None:
    import torch
    import torch.nn.functional as F

    from ltspec.nets import build_model

    torch.set_num_threads(threads)
    if net == "lenet":
        from ltspec.data import load_dataset

        data = load_dataset("digits", root="data")
        model = build_model("lenet300100", num_classes=10, in_channels=1, input_size=8, seed=0)
        x, y = data.train.x.float() / 255, data.train.y
        batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, len(y), 64)]
    else:
        generator = torch.Generator().manual_seed(0)
        model = build_model("vgg16", num_classes=10, in_channels=3, input_size=32, seed=0)
        batches = [(torch.randn(32, 3, 32, 32, generator=generator), torch.randint(0, 10, (32,), generator=generator))
                   for _ in range(3)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    times = []
    for _ in range(epochs + 1):
        start = time.perf_counter()
        for inputs, labels in batches:
            loss = F.cross_entropy(model(inputs), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    print(json.dumps(statistics.median(times[1:])))


SETTINGS = {"1 thread": (1, "PASSIVE"), "all cores, PASSIVE": (0, "PASSIVE"), "all cores, OpenMP default": (0, None)}


def measure(net: str, threads: int, policy: str | None, epochs: int) -> float:
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    else:
        env["OMP_WAIT_POLICY"] = ""  # an empty value leaves OpenMP at its default
    cores = threads or os.cpu_count() or 1
    output = subprocess.run([sys.executable, __file__, "--child", net, str(cores), str(epochs)], env=env,
                            capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        net, threads, epochs = args.child
        child(net, int(threads), int(epochs))
        return
    print(f"{os.cpu_count()} cores; epoch seconds, median of {args.rounds} rounds")
    for net in ("lenet", "vgg16"):
        results: dict[str, list[float]] = {name: [] for name in SETTINGS}
        for _ in range(args.rounds):
            for name, (threads, policy) in SETTINGS.items():
                results[name].append(measure(net, threads, policy, args.epochs))
        one = statistics.median(results["1 thread"])
        for name, values in results.items():
            print(f"{net:6s} {name:26s} {statistics.median(values):.3f} s   ratio to 1 thread "
                  f"{statistics.median(values) / one:.2f}")


if __name__ == "__main__":
    main()
