"""Clean endings: a stream's first signal is graceful only while it streams, a second (or any
outside streaming) abandons at once; a retry's pause wakes on a stop; an audit row or log line
keeps an error's whole message on one line."""

from __future__ import annotations

import ast
import signal
import threading
import time

import pytest

from ewallet_etl.core.errors import Interrupted
from ewallet_etl.pipelines.stopping import SignalStop, pause, streaming
from tests.helpers import ROOT


def test_outside_streaming_the_first_signal_abandons():
    stop = SignalStop()
    with pytest.raises(Interrupted) as info:
        stop.handle(signal.SIGTERM, None)
    assert info.value.exit_code == 143 and not stop.is_set()


def test_while_streaming_the_first_signal_finishes_the_batch_and_the_second_abandons():
    stop = SignalStop()
    streaming(stop)
    stop.handle(signal.SIGTERM, None)
    assert stop.is_set() and stop.signum == signal.SIGTERM
    with pytest.raises(Interrupted) as info:
        stop.handle(signal.SIGINT, None)
    assert info.value.exit_code == 130


def test_a_retry_pause_wakes_on_a_stop():
    stop = SignalStop(graceful=True)
    threading.Timer(0.1, stop.set).start()
    began = time.monotonic()
    with pytest.raises(Interrupted):
        pause(stop, 30.0)
    assert time.monotonic() - began < 5
    pause(threading.Event(), 0.0)  # no stop: just the wait


@pytest.mark.parametrize("module", ["batch", "replay", "binlog", "mongo"])
def test_audit_rows_keep_the_whole_error_on_one_line(module):
    """`first_line` keeps `Code: 193.` and drops the reason on the next line; the audit row's
    error (report.error) and the failed line must be `one_line`."""
    tree = ast.parse((ROOT / "ewallet_etl" / "pipelines" / f"{module}.py").read_text())
    calls = [node.func.id for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)]
    assert "first_line" not in calls and "one_line" in calls
