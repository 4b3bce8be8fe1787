"""How many stages a Slurm job should hold: one trunk of the quickstart submitted as one job per trunk (the
Slurm runner's default) against one job per training stage (`--stages-per-job 1`) and a middle (`--stages-per-job
4`), on a real one-node Slurm cluster started here from nothing (tests/services.py; root, slurm-wlm and munge).

    python benchmarks/slurm_granularity.py [--rounds 1]

Each variant submits the 32 stages of `--only seed=0 --only lr=0.01` (15 train 12 epochs each; LeNet-300-100 on
the digits, one thread per stage) to fresh stores and follows the jobs to their end; reported: jobs, wall time
from submission to the last job's end, and the CPU time the jobs used (each job's log ends with it). Variants
alternate; ratios are against the per-trunk job of the same round.
"""

import argparse
import io
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from services import slurm_cluster  # noqa: E402 (after the path is set)

VARIANTS = {"a job per trunk": None, "4 training stages per job": 4, "a job per training stage": 1}


def one(folder: Path, limit: int | None) -> tuple[int, float, float]:
    from ltspec.plan import compile_plan
    from ltspec.plan.select import parse_choices, select
    from ltspec.runners.slurm import follow, submit
    from ltspec.spec import load_spec

    spec = folder / "spec.toml"
    text = (ROOT / "specs" / "quickstart.toml").read_text()
    spec.write_text(text + f'\n[tracking]\nuri = "sqlite:///{folder}/mlflow.db"\n\n'
                           f'[storage]\nroot = "{folder}/store"\n')
    loaded = load_spec(spec)
    plan = select(compile_plan(loaded), parse_choices(["seed=0", "lr=0.01"]))
    quiet = Console(file=io.StringIO())
    started = time.perf_counter()
    submission = submit(loaded, plan, device="cpu", stages_per_job=limit, console=quiet)
    assert follow(plan, folder / "store", quiet, poll_seconds=0.2).ok
    wall = time.perf_counter() - started
    cpu = sum(float(found) for log in (folder / "store" / "slurm").glob("*.log")
              for found in re.findall(r"([0-9.]+) s of CPU", log.read_text()))
    return len(submission.jobs), wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1)
    rounds = parser.parse_args().rounds
    import os

    results: dict[str, list[tuple[int, float, float]]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as scratch:
        with slurm_cluster(Path(scratch) / "slurm") as cluster:
            os.environ["SLURM_CONF"] = str(cluster.conf)
            for round_ in range(rounds):
                for index, (name, limit) in enumerate(VARIANTS.items()):
                    folder = Path(scratch) / f"{round_}-{index}"
                    folder.mkdir()
                    results[name].append(one(folder, limit))
                    print(f"round {round_ + 1}: {name}: {results[name][-1]}", flush=True)
    base = results["a job per trunk"]
    print(f"\n{'variant':<28} {'jobs':>5} {'wall s':>8} {'job CPU s':>10} {'wall ratio':>11} {'CPU ratio':>10}")
    for name, found in results.items():
        wall = statistics.median(w for _, w, _ in found)
        cpu = statistics.median(c for _, _, c in found)
        wall_ratio = statistics.median(w / b[1] for (_, w, _), b in zip(found, base))
        cpu_ratio = statistics.median(c / b[2] for (_, _, c), b in zip(found, base))
        print(f"{name:<28} {found[0][0]:>5} {wall:>8.1f} {cpu:>10.1f} {wall_ratio:>10.2f}x {cpu_ratio:>9.2f}x")


if __name__ == "__main__":
    main()
