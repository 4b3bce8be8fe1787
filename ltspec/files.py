"""Files that survive a crash and say what went wrong: atomic writes, checksums, setting a damaged file aside.

The store (`ltspec.store`) is built on these. A file is written whole or not at all; its checksum is its size and
its SHA-256 (hashlib's: no dependency; 1.7 GB/s on one core of our VM, which has SHA instructions, twice blake2b's
and half crc32's, and `sha256sum FILE` checks a record by hand);
a file found damaged is renamed to a hidden name beside it, never deleted; an OS error becomes a `StoreError`
naming the path and what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ltspec.faults import EnvironmentFault, os_reason, shown


class StoreError(EnvironmentFault):
    """The store's filesystem failed (full, read-only, in the way) or holds damaged data; the message names the
    path."""


def checksum(data: bytes) -> dict:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def file_checksum(path: Path) -> dict:
    with open(path, "rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
        return {"size": os.fstat(file.fileno()).st_size, "sha256": digest}


def set_aside(path: Path) -> Path:
    """Rename a damaged file to a hidden name beside it, which nothing reads or vouches for: never delete data."""
    aside = path.with_name(f".{path.name}.{time.strftime('%Y%m%d-%H%M%S')}.{os.getpid()}.damaged")
    os.replace(path, aside)
    return aside


def fault(action: str, path: Path, error: OSError, detail: str = "") -> StoreError:
    return StoreError(f"{action} {shown(str(path))}: {os_reason(error)}{detail}.")


def write_atomically(path: Path, write: Callable[[IO[bytes]], object], durable: bool = True) -> None:
    """Write through a temporary file in the same directory, then rename it over `path` (atomic on POSIX).

    The file is fsynced before the rename and the directory after it, so that after a power loss the final name
    holds either the old content or the whole new one, and renames reach the disk in the order they were made
    (which is what lets the completion record vouch for the artifacts written before it). When the write fails
    for an OS fault (a full disk, say), the error raised names the path and the fault, whether `write` raised it,
    swallowed it (torch.save's `unexpected pos`, kept as the first error) or closing the file raised it again.
    Without `durable` both fsyncs are skipped (checkpoints): the rename stays atomic while the machine stays up.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                                                 suffix=".tmp")
    except OSError as error:
        raise fault("cannot write", path, error) from None
    file = os.fdopen(descriptor, "wb")
    witness = _Witness(file)
    try:
        write(witness)
        file.flush()
        if durable:
            os.fsync(file.fileno())
        file.close()
        os.replace(temporary, path)
    except BaseException as first:
        cleanup = _close_quietly(file)
        with contextlib.suppress(OSError):
            Path(temporary).unlink(missing_ok=True)
        cause = first if isinstance(first, OSError) else witness.error or cleanup
        if cause is None or not isinstance(first, Exception):
            raise
        detail = "" if cause is first else f" (the write itself failed first: {type(first).__name__}: {first})"
        raise fault("cannot write", path, cause, detail) from first
    if durable:
        fsync_directory(path.parent)


class _Witness:
    """The file as `write` sees it, keeping the OS error of a failed write: torch.save swallows it and raises
    `RuntimeError: unexpected pos`, which names neither the file nor the full disk."""

    def __init__(self, file: IO[bytes]):
        self.file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        try:
            self.file.flush()
        except OSError as error:
            self.error = error
            raise


def _close_quietly(file: IO[bytes]) -> OSError | None:
    """Close a file whose write failed; closing flushes what is buffered, which fails again on a full disk."""
    try:
        file.close()
    except OSError as error:
        return error
    return None


def fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
