"""What many tests share: the `ltspec` command as a subprocess, and specs written into a test's folder."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "specs" / "quickstart.toml"


def ltspec(*args: str, cwd: Path = ROOT, **kwargs) -> subprocess.CompletedProcess:
    """Run `ltspec ARGS` in `cwd` (the repository by default) and wait for it, capturing its output as text."""
    return subprocess.run([sys.executable, "-m", "ltspec", *args], capture_output=True, text=True, cwd=cwd, **kwargs)


def write_spec(folder: Path, template: str, name: str = "spec.toml", **values) -> Path:
    """Write `template` (str.format fields; `{folder}` is the folder, for tracking and storage paths) to
    `folder/name`, so that every store, database and report of the test lives in its own folder."""
    path = folder / name
    path.write_text(template.format(folder=folder.as_posix(), **values))
    return path
