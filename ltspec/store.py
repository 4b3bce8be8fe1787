"""The artifact store: a directory of stage outputs, addressed by stage key.

Every stage of a plan owns one directory, `root/<key[:2]>/<key>` (the two-character fan-out keeps directories small
on shared filesystems). In it the stage writes its artifacts, `<name>.pt` (a dict of tensors) and `<name>.json`,
an epoch checkpoint `checkpoint.pt` while it trains, and last of all its completion record `record.json`.

The store's guarantees are what make re-runs cheap and crashes harmless:
- every file is written to a temporary name in the same directory, fsynced (checkpoints are not), then renamed over
  its final name, so a reader never sees half a file and a crash leaves at most a `.<name>.<pid>.*.tmp` file;
- a stage is complete exactly when `record.json` exists, and the record is written after every artifact, so a
  complete stage has all of its artifacts;
- a checkpoint that cannot be read is treated as absent (with a warning): the stage restarts instead of failing;
- `claim` serialises the processes that would run the same stage, across machines that share the directory.

torch is imported inside the methods that need it, so that importing the store (or the CLI) stays cheap.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

RECORD = "record.json"
CHECKPOINT = "checkpoint.pt"
LOCK = ".lock"

KEY_PATTERN = re.compile(r"[0-9a-f]{2,}")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@=+-]*")
RESERVED_NAMES = frozenset({"record", "checkpoint"})



@dataclass(frozen=True)
class Store:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def stage_dir(self, key: str) -> Path:
        if not KEY_PATTERN.fullmatch(key):
            raise ValueError(f"a stage key is a lowercase hex string, got {key!r}")
        return self.root / key[:2] / key

    # Completion

    def is_complete(self, key: str) -> bool:
        return (self.stage_dir(key) / RECORD).exists()

    def record(self, key: str) -> dict | None:
        path = self.stage_dir(key) / RECORD
        return json.loads(path.read_text()) if path.exists() else None

    def complete(self, key: str, record: dict) -> None:
        """Mark the stage done. Call it after the stage's last artifact is written: the record is the commit."""
        _write_atomically(self.stage_dir(key) / RECORD, lambda f: f.write(_canonical_json(record).encode()))

    # Artifacts

    def write_tensors(self, key: str, name: str, tensors: dict[str, torch.Tensor]) -> Path:
        import torch

        path = self._artifact(key, name, ".pt")
        _write_atomically(path, lambda f: torch.save(tensors, f))
        return path

    def read_tensors(self, key: str, name: str, map_location: Any = "cpu") -> dict[str, torch.Tensor]:
        import torch

        return torch.load(self._artifact(key, name, ".pt"), map_location=map_location, weights_only=True)

    def write_json(self, key: str, name: str, obj: Any) -> Path:
        path = self._artifact(key, name, ".json")
        _write_atomically(path, lambda f: f.write(_canonical_json(obj).encode()))
        return path

    def read_json(self, key: str, name: str) -> Any:
        return json.loads(self._artifact(key, name, ".json").read_text())

    def has(self, key: str, name: str) -> bool:
        """Whether an artifact of this name exists, as tensors or as JSON."""
        return any(self._artifact(key, name, suffix).exists() for suffix in (".pt", ".json"))

    # Epoch checkpoints

    def save_checkpoint(self, key: str, state: dict) -> None:
        """Replace the stage's checkpoint. `state` holds tensors and plain Python values (as state_dicts do).

        Atomic but not fsynced: a checkpoint only saves time, and a torn one after a power loss loads as absent."""
        import torch

        _write_atomically(self.stage_dir(key) / CHECKPOINT, lambda f: torch.save(state, f), durable=False)

    def load_checkpoint(self, key: str) -> dict | None:
        """The last checkpoint, or None if there is none or it cannot be read (the stage then starts over).

        Any load error counts as unreadable: a truncated file alone raises RuntimeError, EOFError, ValueError or
        OSError depending on where it was cut. Starting over costs only time, and a fault of the filesystem itself
        (a permission error, say) resurfaces at the stage's next save_checkpoint.
        """
        import torch

        path = self.stage_dir(key) / CHECKPOINT
        if not path.exists():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            warnings.warn(f"ignoring unreadable checkpoint {path}: {error}", RuntimeWarning, stacklevel=2)
            return None

    def clear_checkpoint(self, key: str) -> None:
        (self.stage_dir(key) / CHECKPOINT).unlink(missing_ok=True)

    # Mutual exclusion

    @contextmanager
    def claim(self, key: str) -> Iterator[None]:
        """Hold the stage's lock, waiting for any other holder, so that no two workers run the same stage.

        The holder that arrives second must check `is_complete` again once inside: it usually finds the work done.
        flock locks an open file, not a process, so threads that claim separately also exclude each other; on NFS
        Linux maps flock onto the server's byte-range locks. The lock file is never deleted, since deleting it
        would let a waiter and a newcomer lock two different files.
        """
        path = self.stage_dir(key) / LOCK
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as lock_file:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("stage %s is claimed by another worker; waiting", key)
                fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _artifact(self, key: str, name: str, suffix: str) -> Path:
        if not NAME_PATTERN.fullmatch(name) or name in RESERVED_NAMES:
            raise ValueError(
                f"an artifact name is letters, digits and _.@=+- (not starting with a dot),"
                f" and not one of {sorted(RESERVED_NAMES)}; got {name!r}"
            )
        return self.stage_dir(key) / f"{name}{suffix}"


def _canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, indent=2) + "\n"


def _write_atomically(path: Path, write: Callable[[IO[bytes]], object], durable: bool = True) -> None:
    """Write through a temporary file in the same directory, then rename it over `path` (atomic on POSIX).

    The file is fsynced before the rename and the directory after it, so that after a power loss the final name
    holds either the old content or the whole new one, and renames reach the disk in the order they were made
    (which is what lets the completion record vouch for the artifacts written before it). Without `durable`, both
    fsyncs are skipped: the rename is still atomic for every reader while the machine stays up.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            if durable:
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
