"""Signals under `preemptible`: SIGTERM and SIGHUP raise Preempted like Ctrl-C, never inside a `deferred` block."""

import os
import signal
import time

import pytest

from ltspec import preemption


def test_sigterm_raises_preempted_where_the_main_thread_is():
    with pytest.raises(preemption.Preempted) as raised, preemption.preemptible():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert preemption.exit_code(raised.value) == 143


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_inside_a_deferred_block_is_raised_when_the_block_ends(signum):
    """An sqlite write cut short holds its lock against the cleanup's write: the signal waits for the block."""
    if signal.getsignal(signum) is signal.SIG_IGN:
        pytest.skip(f"this process was started ignoring {signum.name}")
    finished = []
    with pytest.raises(KeyboardInterrupt) as raised, preemption.preemptible():
        with preemption.deferred():
            with preemption.deferred():
                os.kill(os.getpid(), signum)
                time.sleep(0.2)
                finished.append("inner")
            finished.append("outer")
        finished.append("after")
    assert finished == ["inner", "outer"] and preemption.cause(raised.value) == signum


def test_a_block_that_fails_keeps_its_error_and_the_signal_comes_out_of_the_next():
    with preemption.preemptible():
        with pytest.raises(ValueError):
            with preemption.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)
                raise ValueError("the block's own error")
        with pytest.raises(preemption.Preempted):
            with preemption.deferred():
                pass
