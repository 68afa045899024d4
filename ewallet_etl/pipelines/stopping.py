"""SIGINT/SIGTERM for the change streams: finish the batch in flight, or abandon at once.

A stream's first signal is graceful only while it streams (`graceful`): the micro-batch in
flight is applied, its position saved, and the run ends as usual. Anywhere else (connecting,
preflight, a snapshot, a retry's wait) and at a second signal, the run is abandoned at once as
`Interrupted` (exit 130/143, audited `interrupted`): safe, because every write is idempotent and
the position is saved only after the writes it covers, so the next run redoes what was cut."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Iterator

from ewallet_etl.core.errors import Interrupted


class SignalStop(threading.Event):
    """The `stop` event a stream watches, set by the first signal while `graceful`."""

    def __init__(self, graceful: bool = False) -> None:
        super().__init__()
        self.graceful = graceful
        self.signum = int(signal.SIGTERM)

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.graceful and not self.is_set():
            self.signum = signum
            self.set()
            return
        raise Interrupted(signum)

    @contextmanager
    def installed(self) -> Iterator[SignalStop]:
        """SIGINT and SIGTERM go to `handle` inside the block (the previous handlers after)."""
        previous = {sig: signal.signal(sig, self.handle)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def streaming(stop: threading.Event) -> None:
    """From here on a first signal lets the batch in flight finish (a SignalStop only)."""
    if isinstance(stop, SignalStop):
        stop.graceful = True


def pause(stop: threading.Event, seconds: float) -> None:
    """Wait `seconds` unless `stop` is set first: then abandon (Interrupted)."""
    if stop.wait(seconds):
        raise Interrupted(getattr(stop, "signum", int(signal.SIGTERM)))
