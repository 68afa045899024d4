"""The watermark rule, written down once, and the checkpoint it is kept in.

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
* Rows whose change time is below the checkpoint when they become visible are missed unless
  the overlap still covers them: the INNODB_TRX cap prevents that for transactions open when
  the window is planned; the overlap covers the rest (no PROCESS privilege, a statement not yet
  registered as a transaction, application-stamped times). `--reconcile` detects what slips
  through both, and hard deletes, which no watermark can see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pymysql

from .source_mysql import fetch_one

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
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


def read_checkpoint(conn: pymysql.connections.Connection, pipeline: str) -> datetime | None:
    row = fetch_one(conn, "SELECT last_synced_at FROM checkpoint WHERE pipeline_name = %s",
                    (pipeline,))
    if row is None or row[0] is None or row[0] <= EPOCH.replace(tzinfo=None):
        return None
    return row[0].replace(tzinfo=timezone.utc)


def save_checkpoint(conn: pymysql.connections.Connection, pipeline: str, value: datetime) -> None:
    with conn.cursor() as cur:
        cur.execute(
            # GREATEST: a slower run finishing after a newer one never moves it back.
            "INSERT INTO checkpoint (pipeline_name, last_synced_at) VALUES (%s, %s) "
            "ON DUPLICATE KEY UPDATE last_synced_at = "
            "GREATEST(last_synced_at, VALUES(last_synced_at))",
            (pipeline, value.astimezone(timezone.utc).replace(tzinfo=None)),
        )
