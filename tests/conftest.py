"""What many tests share: the `ltspec` command as a subprocess, and specs written into a test's folder."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "specs" / "quickstart.toml"


def ltspec(*args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    """Run `ltspec ARGS` in `cwd` and wait for it, capturing its output as text."""
    return subprocess.run([sys.executable, "-m", "ltspec", *args], capture_output=True, text=True, cwd=cwd, **kwargs)


def write_spec(folder: Path, template: str, name: str = "spec.toml", **values) -> Path:
    """Write `template` (str.format fields; `{folder}` is the folder, for tracking and storage paths) to
    `folder/name`, so that every store, database and report of the test lives in its own folder."""
    path = folder / name
    path.write_text(template.format(folder=folder.as_posix(), **values))
    return path


def default_signals(command: list[str]) -> list[str]:
    """`command`, started with SIGINT, SIGTERM and SIGHUP at their defaults whatever this process ignores (pytest
    in the background ignores SIGINT, under nohup SIGHUP, and a child inherits the ignore): a small Python resets
    them and execs it. (A `preexec_fn` would do it too, but is unsafe in a process with threads, as Ray's driver.)"""
    return [sys.executable, "-c", RESET_SIGNALS, *command]


RESET_SIGNALS = """import os, signal, sys
for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(signum, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])
"""
