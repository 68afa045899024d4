"""Where the batch pipeline stands: the source's checkpoint and the warehouse's own mark.

The rule that combines them is `core.window.start_point`: a run starts from the lower of the
two. The checkpoint is the write-up's `checkpoint` table in the source (resetting it to 1970
forces a full load); the mark, the batch's save in `analytics_dw.etl_state` (state/store.py),
says what landed in this warehouse, so a fresh, second or restored warehouse gets what it lacks.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pymysql

from ewallet_etl.core.instants import EPOCH, from_micros, micros
from ewallet_etl.sources.mysql import fetch_one
from ewallet_etl.state import store
from ewallet_etl.warehouse import Warehouse

# The batch's saves in etl_state (state/store.py), and those of the table before it.
LANDED_SQL = """
SELECT max(visitParamExtractUInt(cursor, 'watermark_us')), count() FROM analytics_dw.etl_state
WHERE pipeline = {pipeline:String} AND kind = 'batch' AND source = {source:String}
"""
LANDED_BEFORE_SQL = """
SELECT max(watermark_us), count() FROM analytics_dw.etl_watermarks
WHERE pipeline = {pipeline:String} AND source = {source:String}
"""
FACTS_PRESENT_SQL = "SELECT count() FROM analytics_dw.fact_sales"


def read_landed(wh: Warehouse, pipeline: str, source: str) -> datetime | None:
    """The watermark of the last window of `pipeline` from `source` that landed in this
    warehouse; None if none did, or if its fact table is empty (emptied or replaced since)."""
    params = {"pipeline": pipeline, "source": source}
    found = [int(newest) for sql in (LANDED_SQL, LANDED_BEFORE_SQL)
             for newest, marks in wh.query(sql, params) if marks]
    if not found:
        return None
    ((facts,),) = wh.query(FACTS_PRESENT_SQL)
    if not facts:
        return None
    return from_micros(max(found))


def save_landed(wh: Warehouse, pipeline: str, source: str, value: datetime,
                run_id: str) -> None:
    """Say that `pipeline`'s data from `source` up to `value` landed in this warehouse."""
    store.save(wh, pipeline, "batch", {"watermark_us": micros(value)}, source, run_id)


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
