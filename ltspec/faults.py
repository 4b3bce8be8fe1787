"""Faults of the environment: the disk, the filesystem, a database file or a server, never the spec or the code.

The library raises them with a message that names the path or URI, says what went wrong in words, and says what
to do; the CLI prints that message as one paragraph and exits 1, never a traceback. A bad spec is not one of
them (that is `SpecError`, exit 2), nor is a stage that fails on its own (`StageFailed`).
"""

from __future__ import annotations

import errno

SHOWN_CHARACTERS = 200  # a 10k-character path in a message hides the message; its two ends say which path it is

HINTS = {
    errno.ENOSPC: "the disk is full: free some space, or move the store elsewhere",
    errno.EDQUOT: "the disk quota is exhausted: free some space, or move the store elsewhere",
    errno.EROFS: "the filesystem is read-only: make it writable, or point the spec at a writable folder",
    errno.EACCES: "permission denied: make it writable for this user, or point the spec at a writable folder",
    errno.EPERM: "permission denied: make it writable for this user, or point the spec at a writable folder",
    errno.ENOTDIR: "a file stands where a folder is needed: move that file away, or point the spec elsewhere",
    errno.EEXIST: "a file stands where a folder is needed: move that file away, or point the spec elsewhere",
    errno.ENAMETOOLONG: "the path is too long for the filesystem: choose a shorter one",
    errno.EFBIG: "the file would exceed the size this process may write (ulimit -f) or the filesystem allows",
}


class EnvironmentFault(Exception):
    """A fault of the machine, its files or a server; the message is one paragraph that says what to do."""


def shown(text: str) -> str:
    """A path or URI as a message shows it: whole, or its two ends around an ellipsis when it is very long."""
    if len(text) <= SHOWN_CHARACTERS:
        return text
    half = SHOWN_CHARACTERS // 2
    return f"{text[:half]}…{text[-half:]} ({len(text)} characters)"


def os_reason(error: OSError) -> str:
    """What an OS error means for the user: the system's words and, for the common faults, what to do."""
    words = error.strerror or str(error) or type(error).__name__
    hint = HINTS.get(error.errno)
    return f"{words} ({hint})" if hint else words
