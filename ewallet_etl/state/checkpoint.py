"""Where the batch pipeline stands: the source's checkpoint and the warehouse's own mark.

The rule that combines them is `core.window.start_point`: a run starts from the lower of the
two. The checkpoint is the write-up's `checkpoint` table in the source (resetting it to 1970
forces a full load); the mark, `analytics_dw.etl_watermarks`, says what landed in this
warehouse, so a fresh, second or restored warehouse gets what it lacks.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pymysql

from ewallet_etl.core.instants import EPOCH, from_micros, micros
from ewallet_etl.sources.mysql import fetch_one
from ewallet_etl.warehouse import Warehouse

LANDED_SQL = """
SELECT max(watermark_us), count() FROM analytics_dw.etl_watermarks
WHERE pipeline = {pipeline:String} AND source = {source:String}
"""
FACTS_PRESENT_SQL = "SELECT count() FROM analytics_dw.fact_sales"


def read_landed(wh: Warehouse, pipeline: str, source: str) -> datetime | None:
    """The watermark of the last window of `pipeline` from `source` that landed in this
    warehouse; None if none did, or if its fact table is empty (emptied or replaced since)."""
    ((newest, marks),) = wh.query(LANDED_SQL, {"pipeline": pipeline, "source": source})
    if not marks:
        return None
    ((facts,),) = wh.query(FACTS_PRESENT_SQL)
    if not facts:
        return None
    return from_micros(int(newest))


def landed_row(pipeline: str, source: str, value: datetime, run_id: str,
               saved_at: datetime) -> pa.Table:
    """The etl_watermarks row saying that `pipeline`'s data up to `value` landed."""
    return pa.table({
        "pipeline": [pipeline], "source": [source],
        "watermark_us": pa.array([micros(value)], pa.uint64()),
        "saved_at": pa.array([saved_at.astimezone(timezone.utc)], pa.timestamp("s", tz="UTC")),
        "run_id": [run_id],
    })


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
