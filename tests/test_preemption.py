"""Signals under `preemptible`: SIGTERM and SIGHUP raise Preempted like Ctrl-C, never inside a `deferred` block."""

import os
import signal
import time

import pytest

from ltspec import preemption


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_raise_preempted_where_the_main_thread_is(signum):
    """One handler for both: what `ltspec run` prints (`interrupted: by SIGHUP`) and exits with (128 + the signal)
    comes from the signal it names; tests/test_run.py sends SIGTERM to a real run. (The signal is set to its default
    first: pytest under nohup ignores SIGHUP, and `preemptible` leaves an ignored signal ignored.)"""
    started_with = signal.signal(signum, signal.SIG_DFL)
    try:
        with pytest.raises(preemption.Preempted) as raised, preemption.preemptible():
            os.kill(os.getpid(), signum)
            time.sleep(5)
    finally:
        signal.signal(signum, started_with)
    assert preemption.cause(raised.value) == signum
    assert preemption.exit_code(raised.value) == {signal.SIGTERM: 143, signal.SIGHUP: 129}[signum]


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
