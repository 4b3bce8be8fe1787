"""The paper's rehearsal end to end: `ltspec run specs/paper/ --rehearse` offline in a fresh folder, timed, and
every file of the README's coverage table checked in the rehearsal's report folders.

    python benchmarks/rehearsal.py [--workers 2] [--keep DIR] [KEY=VALUE ...]

`KEY=VALUE` are overrides of every spec, as on the command line (`model.width=0.25` rehearses at a quarter of the
channels, for a machine without the ~52 GB that the full-width store of the paper takes).

The run is a whole process (imports, estimate, 5,235 stages, nine reports) in a folder with no `data/`, so every
CIFAR spec trains on its synthetic stand-in and nothing is downloaded. It prints the wall time, the CPU time of the
run and of every process under it (sampled each second: the local runner's workers are forked by multiprocessing's
fork server, whose children are never reaped into this process's accounting), the load average before and after
(other processes on the machine stretch the wall time, not the CPU time), and the ratio of the rehearsal's epochs
to the real paper's from the same plans; then how much the store, MLflow's files and the reports take on disk, and
last whether every file of the README's coverage table was written.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "specs" / "paper"


def coverage() -> list[tuple[str, str]]:
    """(spec path, file name) for every file the README's coverage table names."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| paper | what it shows |"):].split("\n\n")[0].splitlines()[2:]
    named = []
    for line in table:
        _, _, specs, _, files = [cell.strip() for cell in line.strip("|").split("|")]
        named += [(spec, name) for spec in re.findall(r"`(specs/[^`]+\.toml)`", specs)
                  for name in re.findall(r"`([a-z0-9-]+\.(?:png|md))`", files)]
    return named


def measured(command: list[str], cwd: Path, log) -> tuple[int, float, float]:
    """Exit code, wall seconds, and CPU seconds of the command's process and of every process under it, each read
    once a second while it lives (a process's last second is not counted)."""
    import psutil

    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    root, cpu = psutil.Process(process.pid), {}
    while process.poll() is None:
        for each in [root, *root.children(recursive=True)]:
            try:
                with each.oneshot():
                    times = each.cpu_times()
                    cpu[each.pid, each.create_time()] = times.user + times.system
            except psutil.Error:  # it ended while being read
                continue
        time.sleep(1)
    return process.returncode, time.perf_counter() - start, sum(cpu.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="run in this folder (kept) instead of a temporary one")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of every spec")
    args = parser.parse_args()

    from ltspec.plan import compile_plan
    from ltspec.plan.combine import combine
    from ltspec.rehearsal import rehearse
    from ltspec.report.write import report_name
    from ltspec.spec import load_spec

    specs = sorted(PAPER.glob("*.toml"))
    real = combine([compile_plan(load_spec(path, args.overrides)) for path in specs], "paper").plan
    folder = args.keep or Path(tempfile.mkdtemp(prefix="rehearsal-"))
    folder.mkdir(parents=True, exist_ok=True)
    rehearsed = combine([compile_plan(rehearse(load_spec(path, args.overrides), lambda name, root: False).loaded)
                         for path in specs], "rehearsal").plan
    print(f"paper: {len(real.stages)} stages, {real.epochs} epochs; rehearsal: {len(rehearsed.stages)} stages, "
          f"{rehearsed.epochs} epochs ({rehearsed.epochs / real.epochs:.4f} of them); in {folder}")
    load = os.getloadavg()
    with open(folder / "run.log", "w") as log:
        code, wall, cpu = measured([sys.executable, "-m", "ltspec", "run", str(PAPER), "--rehearse", "--device", "cpu",
                                    "--workers", str(args.workers), "--yes", *args.overrides], folder, log)
    print(f"exit {code}; wall {wall / 60:.1f} min, CPU {cpu / 60:.1f} min "
          f"({cpu / len(rehearsed.stages):.2f} s a stage), {args.workers} workers on {os.cpu_count()} cores; "
          f"load average {load[0]:.1f} before, {os.getloadavg()[0]:.1f} after; log {folder / 'run.log'}")
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    print(f"on disk: {size / 2**30:.1f} GiB (the store, MLflow's database and artifacts, the reports)")
    missing = []
    for spec, name in coverage():
        rehearsal = rehearse(load_spec(ROOT / spec, args.overrides), lambda name, root: False).loaded
        written = folder / "reports" / report_name(rehearsal) / name
        if not written.exists():
            missing.append(str(written.relative_to(folder)))
    print(f"coverage table: {len(coverage()) - len(missing)} of {len(coverage())} files written"
          + (f"; missing: {', '.join(missing)}" if missing else ""))


if __name__ == "__main__":
    main()
