"""Progress of a long load, at the default log level: rows so far, rows per second, elapsed.

A record at most every `EVERY` seconds (and none for a run shorter than that), on the logger
`ewallet_etl.progress`, with the numbers also as `record.progress` (a dict): a log gets plain
lines, `--log-format json` gets them as fields, and on a terminal the command line draws them
as a bar redrawn in place (cli.TerminalProgress; a fraction when the total is known)."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("ewallet_etl.progress")
EVERY = 2.0  # seconds between two progress records


class Progress:
    def __init__(self, what: str, every: float | None = None, total: int | None = None) -> None:
        self.what, self.every, self.total = what, EVERY if every is None else every, total
        self.rows = 0
        self.started = self.last = time.monotonic()

    def add(self, rows: int) -> None:
        self.rows += rows
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            elapsed = now - self.started
            rate = self.rows / elapsed if elapsed > 0 else 0.0
            log.info("%s: %d rows, %.0f rows/s, %.1f s", self.what, self.rows, rate, elapsed,
                     extra={"progress": {"what": self.what, "rows": self.rows,
                                         "total": self.total, "rows_per_second": round(rate),
                                         "elapsed_seconds": round(elapsed, 1)}})
