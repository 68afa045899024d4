"""The floor of the pipeline's own stack on the ClickHouse server, timed by bench/run.py like
every method: the pipeline's reader (`sources.mysql.stream`: connectorx, the full load's
statement, its chunks) straight into the pipeline's writer (one streamed INSERT of Native blocks,
`warehouse.native`), with nothing between them: no transform, no checks, no keys, no dimensions,
no checkpoint, no audit row. The columns land as read (updated_at as microseconds) in a plain
MergeTree table the bench creates beforehand (`methods.RAW_FLOOR_DDL`). A pipeline built on
this reader and writer cannot be faster than this.

    python bench/floor_cx_server.py TABLE    (MYSQL_* and CLICKHOUSE_URL from the environment)
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Iterator

import common  # noqa: F401  (puts the checkout on sys.path)
import pyarrow as pa

from ewallet_etl.config import Settings
from ewallet_etl.sources import mysql as source_mysql
from ewallet_etl.warehouse.native import ArrowInsertClient, ArrowRows
from ewallet_etl.warehouse.server import STREAM_INSERT_SETTINGS

EVERYTHING = {"low": datetime(1970, 1, 1, tzinfo=timezone.utc),
              "high": datetime(9999, 1, 1, tzinfo=timezone.utc)}


def raw_chunks(settings: Settings) -> Iterator[pa.Table]:
    for chunk in source_mysql.stream(settings, source_mysql.TRANSACTIONS_SQL, EVERYTHING):
        at = chunk.schema.get_field_index("updated_at")
        yield chunk.set_column(at, "updated_at", chunk.column(at).cast(pa.int64()))


def main(table: str) -> None:
    settings = Settings.from_env()
    target = settings.warehouse
    client = ArrowInsertClient(host=target.host, port=target.port, user=target.user,
                               password=target.password)
    columns = "transaction_id, user_id, merchant_id, amount, status, transaction_time, updated_at"
    try:
        client.execute(f"INSERT INTO {table} ({columns}) VALUES",
                       [ArrowRows(raw_chunks(settings), lambda column: column.to_pylist())],
                       columnar=True, settings=STREAM_INSERT_SETTINGS)
    finally:
        client.disconnect()


if __name__ == "__main__":
    main(sys.argv[1])
