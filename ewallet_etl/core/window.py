"""The watermark rule, written down once (pure: the checkpoints are kept by state/checkpoint.py).

Rule (for change column `updated_at`, stamped by the source database):

* The window is half-open, `[low, high)`.
* `high` = the source's `UTC_TIMESTAMP(6)` minus `lag`, and below the start of the oldest
  InnoDB transaction still open (its rows will carry earlier change times but are not visible
  yet). Never the ETL host's clock.
* `low` = the saved checkpoint minus `overlap` (closed, `>=`), or the epoch on a full load.
  The overlap re-reads recent rows on every run: a late commit the cap above could not see
  (no PROCESS privilege, application-stamped times) is still caught if it lands within it.
* Rows at exactly the checkpoint are read again (closed lower bound) and absorbed by the
  idempotent load: ReplacingMergeTree keeps one row per key, versioned by the change time.
* The new checkpoint is `high`, saved only after the window's rows have landed; it never
  moves backwards (the save keeps the greater value; resetting it is a deliberate UPDATE).
* The checkpoint lives in the source (the write-up's `checkpoint` table: resetting it to 1970
  still forces a full load), and the warehouse keeps its own mark of what landed in it
  (the batch's save in `etl_state`). A run starts from the lower of the two (`start_point`):
  the source's checkpoint alone cannot tell a fresh, second or restored warehouse from the one
  it describes.
  The mark is saved after the window landed and before the checkpoint.
* Change times are TIMESTAMP columns read in a UTC session (`source_mysql.CHANGE_COLUMNS`), so
  the window, the checkpoint and the versions are UTC instants whatever zone a writer used.
* Rows whose change time is below the checkpoint when they become visible are missed unless
  the overlap still covers them: the INNODB_TRX cap prevents that for transactions open when
  the window is planned; the overlap covers the rest (no PROCESS privilege, a statement not yet
  registered as a transaction, application-stamped times). `--reconcile` detects what slips
  through both, and hard deletes, which no watermark can see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ewallet_etl.core.instants import EPOCH

TRX_MARGIN = timedelta(seconds=1)  # trx_started has whole seconds


@dataclass(frozen=True)
class Window:
    low: datetime
    high: datetime

    def __str__(self) -> str:
        return f"[{self.low.isoformat()}, {self.high.isoformat()})"


def next_window(
    checkpoint: datetime | None,
    db_now: datetime,
    oldest_open_trx: datetime | None,
    lag: timedelta,
    overlap: timedelta,
    full_refresh: bool = False,
) -> Window:
    high = db_now - lag
    if oldest_open_trx is not None:
        high = min(high, oldest_open_trx - TRX_MARGIN)
    if checkpoint is None or full_refresh:
        return Window(EPOCH, max(high, EPOCH))
    low = max(checkpoint - overlap, EPOCH)
    return Window(low, max(high, checkpoint))


def start_point(checkpoint: datetime | None, landed: datetime | None) -> datetime | None:
    """Where a run starts: the lower of the source's checkpoint and the warehouse's own mark;
    None (a full load) when either is missing."""
    if checkpoint is None or landed is None:
        return None
    return min(checkpoint, landed)
