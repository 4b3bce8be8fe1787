"""The artifact store: a directory of stage outputs, addressed by stage key.

Every stage of a plan owns one directory, `root/<key[:2]>/<key>` (the two-character fan-out keeps directories small
on shared filesystems). In it the stage writes its artifacts, `<name>.pt` (a dict of tensors) and `<name>.json`,
an epoch checkpoint `checkpoint.pt` while it trains, and last of all its completion record `record.json`.

The store's guarantees are what make re-runs cheap and crashes harmless:
- every file is written to a temporary name in the same directory, fsynced (checkpoints are not), then renamed over
  its final name, so a reader never sees half a file and a crash leaves at most a `.<name>.<pid>.*.tmp` file;
- a stage is complete exactly when `record.json` exists and is sound, and the record is written after every
  artifact, so a complete stage has all of its artifacts;
- the record vouches for the artifact files beside it with their size and SHA-256 (`checksums`): a record
  that is not a record (garbage, `{}`) or an artifact of the wrong size makes the stage count as not done, with one
  warning line naming the file, so the next run recomputes it. Sizes are checked on every `is_complete` (a stat
  per file); hashes when an artifact is read (the bytes are in memory then, so hashing costs no extra read) and by
  `verify_stage(full=True)` (`ltspec verify`). An artifact whose hash fails when read is moved aside (never
  deleted) and the read fails naming the file; the moved file no longer completes its stage;
- a checkpoint that cannot be read is treated as absent (with a warning): the stage restarts instead of failing;
- `claim` serialises the processes that would run the same stage, across machines that share the directory;
- a fault of the filesystem (disk full, read-only, a file where a folder should be, a path too long) is a
  `StoreError` naming the path, with the first error kept when cleaning up fails a second time.

torch is imported inside the methods that need it, so that importing the store (or the CLI) stays cheap.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ltspec.faults import shown
from ltspec.files import StoreError, checksum, fault, file_checksum, set_aside, write_atomically  # noqa: F401

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

RECORD = "record.json"
CHECKPOINT = "checkpoint.pt"
LOCK = ".lock"
CHECKSUMS = "checksums"
RECORD_FIELDS = {"metrics": dict, "history": list, "artifacts": dict}  # what stage execution reads back

KEY_PATTERN = re.compile(r"[0-9a-f]{2,}")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@=+-]*")
RESERVED_NAMES = frozenset({"record", "checkpoint"})
READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
_warned: set[str] = set()


class DamagedArtifact(StoreError):
    """An artifact's bytes differ from what its stage's record vouches for; it has been moved aside."""


@dataclass(frozen=True)
class Damage:
    """One file of a stage that fails its check, and how."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{shown(str(self.path))}: {self.reason}"


@dataclass(frozen=True)
class Store:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def stage_dir(self, key: str) -> Path:
        if not KEY_PATTERN.fullmatch(key):
            raise ValueError(f"a stage key is a lowercase hex string, got {key!r}")
        return self.root / key[:2] / key

    def stage_keys(self) -> Iterator[str]:
        """The key of every stage directory in the store, whichever spec made it."""
        if self.root.is_dir():
            for fan in sorted(self.root.iterdir()):
                if fan.is_dir() and KEY_PATTERN.fullmatch(fan.name):
                    yield from (d.name for d in sorted(fan.iterdir())
                                if d.is_dir() and KEY_PATTERN.fullmatch(d.name) and d.name[:2] == fan.name)

    # Completion

    def is_complete(self, key: str) -> bool:
        """Whether the stage is done: its record is sound and every artifact it vouches for has its size.

        A stage whose record or artifacts fail counts as not done, with one warning line naming the file.
        """
        damage = self.verify_stage(key)
        for item in damage:
            _warn_once(f"{item}; stage {key[:10]} counts as not done, and a run recomputes it")
        return not damage and (self.stage_dir(key) / RECORD).exists()

    def record(self, key: str) -> dict | None:
        """The stage's sound record (with the `checksums` it vouches for), or None."""
        return self._read_record(key)[0]

    def complete(self, key: str, record: dict) -> None:
        """Mark the stage done. Call it after the stage's last artifact is written: the record is the commit.

        The written record is `record` plus `checksums`, the size and hash of every artifact file in the stage's
        directory at this moment (hashed again from disk, so what is vouched for is what a reader will find).
        """
        directory = self.stage_dir(key)
        files = sorted(directory.iterdir()) if directory.is_dir() else []
        checksums = {path.name: file_checksum(path) for path in files if _is_artifact(path)}
        write_atomically(directory / RECORD, lambda f: f.write(_canonical_json({**record, CHECKSUMS: checksums})
                                                                .encode()))

    def verify_stage(self, key: str, *, full: bool = False) -> list[Damage]:
        """What is wrong with a stage's record and the artifacts it vouches for, one `Damage` per file.

        Empty for a sound stage and for one without a record (not done is not broken). Sizes always; with
        `full`, every vouched file is hashed too (what `ltspec verify` does: it reads every byte).
        """
        record, damage = self._read_record(key)
        if damage is not None:
            return [damage]
        found = []
        for name, expected in (record or {}).get(CHECKSUMS, {}).items():
            path = self.stage_dir(key) / name
            size = _size(path)
            if size is None:
                found.append(Damage(path, "missing, though its stage's record vouches for it"))
            elif size != expected["size"]:
                found.append(Damage(path, f"{size} bytes, its stage's record vouches for {expected['size']}"))
            elif full and file_checksum(path) != expected:
                found.append(Damage(path, "its content differs from the hash in its stage's record"))
        return found

    def set_aside(self, damage: list[Damage]) -> list[Path]:
        """Move damaged files aside (never deleting them), so that their stages count as not done."""
        return [set_aside(item.path) for item in damage if item.path.exists()]

    def _read_record(self, key: str) -> tuple[dict | None, Damage | None]:
        """(the record, None) when sound, (None, what is wrong) when broken, (None, None) when there is none."""
        path = self.stage_dir(key) / RECORD
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            return None, None
        except OSError as error:
            raise fault("cannot read", path, error) from None
        try:
            record = json.loads(text)
        except ValueError as error:
            return None, Damage(path, f"not a JSON record ({error})")
        if not isinstance(record, dict):
            return None, Damage(path, "not a JSON object")
        missing = [name for name, kind in RECORD_FIELDS.items() if not isinstance(record.get(name), kind)]
        if missing:
            return None, Damage(path, f"lacks {', '.join(missing)}")
        if not _sound_checksums(record.get(CHECKSUMS, {})):
            return None, Damage(path, "its checksums are not sizes and hashes")
        return record, None

    def _vouched(self, key: str, name: str) -> dict | None:
        record = self._read_record(key)[0]
        return (record or {}).get(CHECKSUMS, {}).get(name)

    # Artifacts

    def write_tensors(self, key: str, name: str, tensors: dict[str, torch.Tensor]) -> Path:
        import torch

        path = self._artifact(key, name, ".pt")
        write_atomically(path, lambda f: torch.save(tensors, f))
        return path

    def read_tensors(self, key: str, name: str, map_location: Any = "cpu") -> dict[str, torch.Tensor]:
        import torch

        data = self._read_checked(key, self._artifact(key, name, ".pt"))
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)

    def write_json(self, key: str, name: str, obj: Any) -> Path:
        path = self._artifact(key, name, ".json")
        write_atomically(path, lambda f: f.write(_canonical_json(obj).encode()))
        return path

    def read_json(self, key: str, name: str) -> Any:
        return json.loads(self._read_checked(key, self._artifact(key, name, ".json")))

    def has(self, key: str, name: str) -> bool:
        """Whether an intact artifact of this name exists, as tensors or as JSON: one of another size than its
        stage's record vouches for is not had, so that the stage writes it again."""
        for suffix in (".pt", ".json"):
            path = self._artifact(key, name, suffix)
            size = _size(path)
            if size is not None:
                vouched = self._vouched(key, path.name)
                return vouched is None or vouched["size"] == size
        return False

    def _read_checked(self, key: str, path: Path) -> bytes:
        """The file's bytes, checked against the stage's record when it vouches for them.

        A damaged file is moved aside, so that its stage no longer counts as complete and the next run recomputes
        it; the error names the file and where it went.
        """
        data = path.read_bytes()
        vouched = self._vouched(key, path.name)
        if vouched is not None and checksum(data) != vouched:
            aside = set_aside(path)
            raise DamagedArtifact(
                f"{shown(str(path))} is damaged: {len(data)} bytes whose hash differs from what the record of stage "
                f"{key[:10]} vouches for ({vouched['size']} bytes). It was moved aside to {aside.name}, and the next "
                "`ltspec run` recomputes the stage; `ltspec verify SPEC` checks the rest of the store.")
        return data

    # Epoch checkpoints

    def save_checkpoint(self, key: str, state: dict) -> None:
        """Replace the stage's checkpoint. `state` holds tensors and plain Python values (as state_dicts do).

        Atomic but not fsynced: a checkpoint only saves time, and a torn one after a power loss loads as absent."""
        import torch

        write_atomically(self.stage_dir(key) / CHECKPOINT, lambda f: torch.save(state, f), durable=False)

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
    def claim(self, key: str) -> Iterator[bool]:
        """Hold the stage's lock, waiting for any other holder, so that no two workers run the same stage; yields
        whether this is the stage's first claim ever (this claim created its lock file), so nothing, no attempt and
        no MLflow run of it, can predate it.

        The holder that arrives second must check `is_complete` again once inside: it usually finds the work done.
        flock locks an open file, not a process, so threads that claim separately also exclude each other; on NFS
        Linux maps flock onto the server's byte-range locks. The lock file is never deleted, since deleting it
        would let a waiter and a newcomer lock two different files. In a store this process may not write, a
        complete stage is claimed without a lock (it is only read); any other claim fails naming the folder.
        """
        path = self.stage_dir(key) / LOCK
        first = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                lock_file, first = open(path, "x"), True  # exclusive creation: one claimant alone is first
            except FileExistsError:
                lock_file = open(path, "a")
        except OSError as error:
            if error.errno not in READ_ONLY or not self.is_complete(key):
                raise fault("cannot lock stage in", path.parent, error) from None
            lock_file = None
        if lock_file is None:
            yield False
            return
        with lock_file:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("stage %s is claimed by another worker; waiting", key)
                fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield first
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


def _sound_checksums(checksums: Any) -> bool:
    return isinstance(checksums, dict) and all(
        isinstance(entry, dict) and isinstance(entry.get("size"), int) and isinstance(entry.get("sha256"), str)
        and NAME_PATTERN.fullmatch(name) for name, entry in checksums.items())


def _is_artifact(path: Path) -> bool:
    """What a record vouches for: the stage's own files, not its record, checkpoint, lock or temporary files."""
    return path.is_file() and not path.name.startswith(".") and path.name not in (RECORD, CHECKPOINT)


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None
    except OSError as error:
        raise fault("cannot read", path, error) from None


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)
