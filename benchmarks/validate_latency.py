"""How long `ltspec validate` takes on the largest shipped spec, as a ratio to starting Python at all.

    python benchmarks/validate_latency.py [--spec specs/vgg16.toml] [--repeats 7]

The two commands alternate and the medians are compared, so machine noise hits both alike. `validate` must stay
well under 0.3 s: it imports neither torch nor mlflow.
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="specs/vgg16.toml")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    baseline, validate = [], []
    for _ in range(args.repeats):
        baseline.append(seconds([sys.executable, "-c", "pass"]))
        validate.append(seconds([sys.executable, "-m", "ltspec", "validate", args.spec]))
    base, ours = statistics.median(baseline), statistics.median(validate)
    print(f"python -c pass            {base * 1000:7.1f} ms (median of {args.repeats})")
    print(f"ltspec validate {args.spec}  {ours * 1000:7.1f} ms")
    print(f"ratio                     {ours / base:7.2f}x; validate's own cost {(ours - base) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
