"""The one hook protocol through which a stage changes training (`ltspec.training.fit`).

Mask enforcement, ADMM, gradual pruning, rewind-point saving, epoch logging and progress are all hooks. This module
imports no torch, so that a mask generator can define its hook beside its spec table (the spec checker reads those
modules) and import torch only inside the methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


class Hook:
    """The one way a stage changes training; override what you need (in the spirit of Lightning callbacks and
    OpenLTH's standard callbacks). `name` keys the hook's state in a checkpoint."""

    name = "hook"

    def penalty(self) -> Tensor:
        """A term added to the loss at every step (its gradient enters the step; the reported loss excludes it)."""
        raise NotImplementedError

    def begin(self, epoch: int) -> None:
        """Run once before the first step of training: `epoch` 0 when fresh, else the checkpoint's epoch it resumes
        from (then after `load_state_dict`)."""

    def after_step(self) -> None:
        """Run after every optimizer step, before the scheduler step: it sees the weights the step wrote."""

    def end_epoch(self, epoch: int, values: dict[str, float]) -> None:
        """Run after each epoch (counted from 1) with its metrics, before the checkpoint that includes it."""

    def state_dict(self) -> dict:
        """What a checkpoint keeps of the hook, so that `load_state_dict` resumes it exactly."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned, after the model and optimizer are restored."""
