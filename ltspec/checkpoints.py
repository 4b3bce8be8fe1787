"""Resume checkpoints off the critical path: a host copy of the state at each eligible epoch, written in the background.

A checkpoint is rewritable scratch that exists only to save time after a crash, so it must not cost time itself.
At every epoch the policy allows (`every` epochs) the state is copied off the device into host buffers kept from
the last copy (`Snapshot`); that copy is all the training loop waits for. At most once per `seconds` one snapshot is
handed to `Writer`, whose thread serialises it while training goes on. The writer holds one snapshot at a time:
the next write waits for the previous one, and the harness copies into a second buffer set while one is written.

Checkpoints are written without fsync (a power loss may leave a torn file, which `Store.load_checkpoint` treats as
absent: the stage restarts), unlike records and artifacts, which stay atomic and durable. When training stops
early for any reason, the newest snapshot (the last finished epoch) is written before the exception goes on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import torch


def copy_to_host(value: Any, into: Any = None) -> Any:
    """`value` (nested dicts, lists and tuples of tensors and plain values) with every tensor copied to host memory,
    reusing the tensors of `into` where shapes and dtypes match, so that a steady loop allocates nothing.

    Device tensors go to pinned buffers with non-blocking copies, ordered on the current stream before the next
    step's kernels: the caller synchronises (`Snapshot.ready`) before reading them.
    """
    if isinstance(value, torch.Tensor):
        source = value.detach()
        if (isinstance(into, torch.Tensor) and into.shape == source.shape and into.dtype == source.dtype
                and into.device.type == "cpu"):
            return into.copy_(source, non_blocking=source.is_cuda)
        if source.is_cuda:
            buffer = torch.empty(source.shape, dtype=source.dtype, pin_memory=True)
            return buffer.copy_(source, non_blocking=True)
        return source.clone()
    if isinstance(value, dict):
        previous = into if isinstance(into, dict) else {}
        return {name: copy_to_host(item, previous.get(name)) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        previous = into if isinstance(into, (list, tuple)) and len(into) == len(value) else [None] * len(value)
        return type(value)(copy_to_host(item, old) for item, old in zip(value, previous))
    return value


class Snapshot:
    """One epoch's state in host memory, with the CUDA event that says when its copies have landed."""

    def __init__(self, epoch: int, state: dict, event: torch.cuda.Event | None):
        self.epoch, self.state, self.event = epoch, state, event

    @classmethod
    def take(cls, epoch: int, state: dict, reuse: Snapshot | None = None) -> Snapshot:
        copied = copy_to_host(state, reuse.state if reuse is not None else None)
        event = None
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            event = torch.cuda.Event()
            event.record()
        return cls(epoch, copied, event)

    def ready(self) -> dict:
        if self.event is not None:
            self.event.synchronize()
        return self.state


class Writer:
    """One background thread that writes one snapshot at a time; `submit` first waits for the previous write."""

    def __init__(self, write: Callable[[dict], None]):
        self.write = write
        self.thread: threading.Thread | None = None
        self.writing: Snapshot | None = None
        self.error: BaseException | None = None
        self.written_epoch = 0
        self.written_at = time.monotonic()

    def submit(self, snapshot: Snapshot) -> None:
        self.wait()
        self.writing = snapshot
        self.thread = threading.Thread(target=self._run, args=(snapshot,), name="ltspec-checkpoint", daemon=True)
        self.thread.start()

    def wait(self) -> None:
        """Block until the write in flight is on disk; raise its error, if it had one, here in the caller."""
        if self.thread is not None:
            self.thread.join()
            self.thread, self.writing = None, None
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def busy_with(self, snapshot: Snapshot | None) -> bool:
        return snapshot is not None and self.writing is snapshot

    def _run(self, snapshot: Snapshot) -> None:
        try:
            self.write(snapshot.ready())
            self.written_epoch, self.written_at = snapshot.epoch, time.monotonic()
        except BaseException as error:  # handed to the training thread by `wait`
            self.error = error


class Policy:
    """When to copy and when to write: a snapshot every `every` epochs, written when `seconds` have passed since
    the last write began (0: every snapshot is written), the newest one always written by `stop`."""

    def __init__(self, write: Callable[[dict], None], *, every: int, seconds: float,
                 before_write: Callable[[], None] = lambda: None):
        self.every, self.seconds, self.before_write = every, seconds, before_write
        self.writer = Writer(write)
        self.latest: Snapshot | None = None
        self.spare: Snapshot | None = None
        self.started_at = time.monotonic()

    def epoch_done(self, epoch: int, state: Callable[[], dict]) -> None:
        if epoch % self.every:
            return
        due = time.monotonic() - self.started_at >= self.seconds
        if due:
            self.before_write()
        self._take(epoch, state())
        if due:
            self.writer.submit(self.latest)
            self.started_at = time.monotonic()

    def stop(self, *, keep_latest: bool) -> None:
        """Wait for the write in flight; with `keep_latest`, then write the newest snapshot if it is not on disk."""
        self.writer.wait()
        if keep_latest and self.latest is not None and self.latest.epoch > self.writer.written_epoch:
            self.writer.submit(self.latest)
            self.writer.wait()

    def _take(self, epoch: int, state: dict) -> None:
        """Copy over the newest snapshot, or, while that one is being written, over the spare buffers."""
        if self.writer.busy_with(self.latest):
            reuse, self.spare = self.spare, self.latest
        else:
            reuse = self.latest
        self.latest = Snapshot.take(epoch, state, reuse)
