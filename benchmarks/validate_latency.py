"""How long `ltspec validate` takes on the largest shipped spec, against what any typer + pydantic command costs.

    python benchmarks/validate_latency.py [--spec specs/vgg16.toml] [--repeats 11]

Three commands alternate and their medians are compared, so machine noise hits all alike:
- `python -c pass`, starting Python at all;
- the floor: importing typer and building one pydantic model, which is what any typer + pydantic command pays
  before it does its own work (pydantic's core, its lazily imported field machinery, its plugin loader);
- `ltspec validate SPEC`.
validate's own cost is its time above the floor: reading the TOML, building the spec's models, checking every
sweep point and compiling the plan. Bytecode is written as in a normal install (a warm-up run of each command
writes it even where PYTHONDONTWRITEBYTECODE is set), so the timings are of the imports, not of compiling them.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
FLOOR = "import typer\nfrom pydantic import BaseModel\nclass Floor(BaseModel):\n    x: int = 0"


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT, env=ENV)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="specs/vgg16.toml")
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    commands = {"python -c pass": [sys.executable, "-c", "pass"],
                "typer + one pydantic model": [sys.executable, "-c", FLOOR],
                f"ltspec validate {args.spec}": [sys.executable, "-m", "ltspec", "validate", args.spec]}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():
        seconds(command)
    for _ in range(args.repeats):
        for name, command in commands.items():
            times[name].append(seconds(command))
    base, floor, ours = (statistics.median(times[name]) for name in commands)
    for name, median in zip(commands, (base, floor, ours)):
        print(f"{name:40s} {median * 1000:6.1f} ms  ({median / base:4.1f}x python)")
    print(f"validate's own cost above the floor: {(ours - floor) * 1000:.0f} ms (median of {args.repeats})")


if __name__ == "__main__":
    main()
