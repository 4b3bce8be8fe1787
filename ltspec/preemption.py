"""SIGTERM (how Slurm and other schedulers stop a job) and SIGHUP (a closed terminal) handled like Ctrl-C.

Python turns SIGINT into a KeyboardInterrupt, which a stage's lifecycle already answers: the checkpoint of its
finished epochs stays, its MLflow run is marked KILLED, the runner stops and the next run resumes. SIGTERM and
SIGHUP would end the process on the spot, the run left RUNNING. Under `preemptible()` they raise `Preempted`, a
KeyboardInterrupt, so the same cleanup runs, and a second signal cannot cut it short (SIGKILL still can). A
signal the process was started ignoring (`nohup` ignores SIGHUP) stays ignored.

A signal must not land inside a write to the tracking store: an sqlite write cut short by an exception keeps its
lock until the process ends, so the cleanup's own write ("mark the run KILLED") would wait on it and fail. Such
writes run `deferred()`: a signal that arrives inside one, Ctrl-C included, is raised as soon as it ends.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


# The signal last turned into Preempted, for a caller that sees only a KeyboardInterrupt: Ray's blocking calls
# (ray.wait, ray.get) replace the exception a signal handler raises with a plain KeyboardInterrupt.
received: int | None = None


class Preempted(KeyboardInterrupt):
    """A SIGTERM or SIGHUP, raised wherever the main thread was, so that the interrupted stage cleans up."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def cause(interrupt: KeyboardInterrupt) -> signal.Signals:
    """The signal behind a KeyboardInterrupt: SIGTERM or SIGHUP if `preemptible` caught one, else SIGINT."""
    return signal.Signals(getattr(interrupt, "signum", None) or received or signal.SIGINT)


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal's number, as a shell reports a process the signal ended: 130 for Ctrl-C, 143 for SIGTERM,
    129 for SIGHUP."""
    return 128 + cause(interrupt)


def _preempt(signum: int, frame) -> None:
    global received, pending
    if signum == signal.SIGINT:
        if deferring:
            pending = signal.SIGINT
            return
        raise KeyboardInterrupt
    received = signum
    for each in SIGNALS:
        if signal.getsignal(each) is _preempt:
            signal.signal(each, signal.SIG_IGN)
    if deferring:
        pending = signum
        return
    raise Preempted(signum)


deferring = 0  # how many `deferred` blocks the main thread is in
pending: int | None = None  # a signal that arrived in one, raised when the outermost ends


@contextmanager
def deferred() -> Iterator[None]:
    """A block that a signal must not cut in half (a write to the tracking store); under `preemptible`, a SIGINT,
    SIGTERM or SIGHUP that arrives inside it is raised when the block ends (not when it fails: its own error goes
    on, and the signal comes out of the next block)."""
    global deferring, pending
    deferring += 1
    try:
        yield
    finally:
        deferring -= 1
    if not deferring and pending is not None:
        signum, pending = pending, None
        raise KeyboardInterrupt if signum == signal.SIGINT else Preempted(signum)


def handlers() -> dict:
    """This process's SIGINT, SIGTERM and SIGHUP handlers, to `restore` after code that replaces them (`ray.init`
    installs a SIGTERM handler that exits without any cleanup)."""
    return {signum: signal.getsignal(signum) for signum in (signal.SIGINT, *SIGNALS)}


def restore(saved: dict) -> None:
    for signum, handler in saved.items():
        if handler is not None:
            signal.signal(signum, handler)


@contextmanager
def preemptible() -> Iterator[None]:
    """SIGTERM and SIGHUP raise `Preempted` inside the block (in the main thread), SIGINT a KeyboardInterrupt as
    always, each held back while a `deferred` block runs; the handlers before it come back after it."""
    global received, pending
    received = pending = None
    saved = handlers()
    for signum, handler in saved.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, _preempt)
    try:
        yield
    finally:
        restore(saved)
