"""The floor of the pipeline's own stack, per engine, timed by bench/run.py like every method:
the pipeline's reader (`sources.mysql.stream`: connectorx, the full load's statement, its
chunks, in pages where the engine asks for them) straight into the pipeline's writer, with
nothing between them: no transform, no checks, no keys, no dimensions, no checkpoint, no audit
row. The writer is the engine's own: one streamed INSERT of Native blocks on a server
(`warehouse.native`, the same squashing settings), or one `INSERT ... SELECT FROM
Python(chunk)` per chunk on chDB (the same engine arguments and insert settings, the same
hand-back of freed pages, and the same wait for merges at the end). The columns land as read
(updated_at as microseconds) in a plain MergeTree table the bench creates beforehand
(`methods.RAW_FLOOR_DDL`). A pipeline built on this reader and writer cannot be faster, or
smaller, than this.

    python bench/floor_raw_copy.py TABLE   (MYSQL_* and CLICKHOUSE_URL from the environment)
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Iterator

import common  # noqa: F401  (puts the checkout on sys.path)
import pyarrow as pa

from ewallet_etl.config import Settings, WarehouseTarget
from ewallet_etl.sources import mysql as source_mysql

COLUMNS = "transaction_id, user_id, merchant_id, amount, status, transaction_time, updated_at"
EVERYTHING = {"low": datetime(1970, 1, 1, tzinfo=timezone.utc),
              "high": datetime(9999, 1, 1, tzinfo=timezone.utc)}


def raw_chunks(settings: Settings, paged: bool) -> Iterator[pa.Table]:
    """The whole table as the pipeline's first load reads it for this engine: in pages of its
    primary key where the warehouse asks for paged reads (chDB), else one statement."""
    sql, key = source_mysql.transactions_read(paged)
    for chunk in source_mysql.stream(settings, sql, EVERYTHING, key):
        at = chunk.schema.get_field_index("updated_at")
        yield chunk.set_column(at, "updated_at", chunk.column(at).cast(pa.int64()))


def to_server(target: WarehouseTarget, table: str, chunks: Iterator[pa.Table]) -> None:
    from ewallet_etl.warehouse.native import ArrowInsertClient, ArrowRows
    from ewallet_etl.warehouse.server import STREAM_INSERT_SETTINGS

    client = ArrowInsertClient(host=target.host, port=target.port, user=target.user,
                               password=target.password)
    try:
        client.execute(f"INSERT INTO {table} ({COLUMNS}) VALUES",
                       [ArrowRows(chunks, lambda column: column.to_pylist())],
                       columnar=True, settings=STREAM_INSERT_SETTINGS)
    finally:
        client.disconnect()


def to_chdb(target: WarehouseTarget, table: str, chunks: Iterator[pa.Table]) -> None:
    from chdb import session

    from ewallet_etl.warehouse.chdb import (
        CHDB_ENGINE_ARGS,
        INSERT_SETTINGS,
        MERGE_WAIT_SECONDS,
        FreedPages,
        finish_merges,
    )

    sess = session.Session(f"{target.path}?{CHDB_ENGINE_ARGS}")
    freed_pages = FreedPages()
    try:
        for chunk in chunks:  # noqa: B007 (read by name by chDB's Python() table function)
            sess.query(f"INSERT INTO {table} ({COLUMNS}) SETTINGS {INSERT_SETTINGS} "
                       f"SELECT {COLUMNS} FROM Python(chunk)")
            freed_pages.inserted(sess, chunk.nbytes)
        finish_merges(sess, MERGE_WAIT_SECONDS)
    finally:
        sess.close()


def main(table: str) -> None:
    settings = Settings.from_env()
    target = settings.warehouse
    if target.kind == "chdb":
        from ewallet_etl.warehouse.chdb import ChdbWarehouse

        to_chdb(target, table, raw_chunks(settings, ChdbWarehouse.paged_reads))
    else:
        from ewallet_etl.warehouse.server import ClickHouseServer

        to_server(target, table, raw_chunks(settings, ClickHouseServer.paged_reads))


if __name__ == "__main__":
    main(sys.argv[1])
