"""Wall time of the offline quickstart end to end, against the bare training it contains.

    python benchmarks/quickstart.py [--sample-epochs 24]

Runs `ltspec run specs/quickstart.toml` in a fresh folder (a new MLflow store and artifact store), then times a
bare PyTorch loop (same net, data, batch size, optimizer; no masks, no evaluation, no logging, no checkpoints) for
a sample of epochs and scales it to the plan's epochs. The ratio is what everything around training costs: the
goal is a quickstart under 3 minutes on a 2-core CPU.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bare_epoch_seconds(epochs: int) -> float:
    import torch
    import torch.nn.functional as F

    from ltspec.data import load_dataset
    from ltspec.nets import build_model

    dataset = load_dataset("digits", root="data")
    model = build_model("lenet300100", num_classes=10, in_channels=1, input_size=8, seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = (dataset.train.x.float() / 255 - dataset.mean[0]) / dataset.std[0]
    y = dataset.train.y
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch))
        for batch in order.split(64):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return (time.perf_counter() - start) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample-epochs", type=int, default=24)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from ltspec.plan import compile_plan
    from ltspec.spec import load_spec

    plan = compile_plan(load_spec(ROOT / "specs" / "quickstart.toml"))
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ltspec", "run", str(ROOT / "specs" / "quickstart.toml"),
                        "--device", "cpu"], cwd=folder, check=True, capture_output=True)
        wall = time.perf_counter() - start
    bare = bare_epoch_seconds(args.sample_epochs) * plan.epochs
    print(f"quickstart: {len(plan.stages)} stages, {plan.epochs} epochs")
    print(f"ltspec run (fresh stores)     {wall:7.1f} s   (goal: under 180 s)")
    print(f"bare training of those epochs {bare:7.1f} s   (from {args.sample_epochs} sampled epochs)")
    print(f"ratio                         {wall / bare:7.2f}x")


if __name__ == "__main__":
    main()
