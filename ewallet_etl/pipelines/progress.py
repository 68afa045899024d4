"""Progress of a long load, at the default log level: rows so far, rows per second, elapsed.

A line at most every `every` seconds (and none for a run shorter than that), on the logger
`ewallet_etl.progress`: plain lines in a log; on a terminal the command line draws them as one
line that updates in place (cli.setup_logging)."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("ewallet_etl.progress")


class Progress:
    def __init__(self, what: str, every: float = 2.0) -> None:
        self.what, self.every = what, every
        self.rows = 0
        self.started = self.last = time.monotonic()

    def add(self, rows: int) -> None:
        self.rows += rows
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            elapsed = now - self.started
            log.info("%s: %d rows, %.0f rows/s, %.1f s", self.what, self.rows,
                     self.rows / elapsed if elapsed > 0 else 0.0, elapsed)
