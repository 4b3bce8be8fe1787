"""Wall time of the offline quickstart end to end, against a bare PyTorch script doing the same training.

    python benchmarks/quickstart.py [--rounds 1]

A: `ltspec run specs/quickstart.toml --device cpu` in a fresh folder (new MLflow store, new artifact store).
B: this file with `--bare`, in its own process: the same net, data, batch size, optimizer and epochs as every
training stage of the plan (its epoch count), with a test evaluation after every epoch as the stages do, and the
fastest simple thread setting for it (one intra-op thread; see benchmarks/threads.py). No masks, no logging, no
checkpoints, no report. Both are timed as whole processes (imports included), alternating A B A B; the ratio is
the median of the per-round ratios. Goal: at most 1.3x.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "specs" / "quickstart.toml"


def bare(epochs: int) -> None:
    import torch
    import torch.nn.functional as F

    from ltspec.data import load_dataset
    from ltspec.nets import build_model

    torch.set_num_threads(1)
    dataset = load_dataset("digits", root="data")
    normalise = lambda x: (x.float() / 255 - dataset.mean[0]) / dataset.std[0]  # noqa: E731
    x, y = normalise(dataset.train.x), dataset.train.y
    test_x, test_y = normalise(dataset.test.x), dataset.test.y
    model = build_model("lenet300100", num_classes=10, in_channels=1, input_size=8, seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch))
        for batch in order.split(64):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            F.cross_entropy(model(test_x), test_y).item()


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare is not None:
        bare(args.bare)
        return
    from ltspec.plan import compile_plan
    from ltspec.spec import load_spec

    plan = compile_plan(load_spec(QUICKSTART))
    ratios, walls, bares = [], [], []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as folder:
            walls.append(timed([sys.executable, "-m", "ltspec", "run", str(QUICKSTART), "--device", "cpu"],
                               Path(folder)))
            bares.append(timed([sys.executable, __file__, "--bare", str(plan.epochs)], Path(folder)))
        ratios.append(walls[-1] / bares[-1])
    print(f"quickstart: {len(plan.stages)} stages, {plan.epochs} epochs; median of {args.rounds} round(s)")
    print(f"ltspec run (fresh stores)              {statistics.median(walls):7.1f} s")
    print(f"bare script, same epochs, eval, 1 thread {statistics.median(bares):5.1f} s")
    print(f"ratio                                  {statistics.median(ratios):7.2f}x   (goal: at most 1.3x)")


if __name__ == "__main__":
    main()
