"""A peer for the chDB engine: the hand-rolled raw copy people write with connectorx and
clickhouse-connect's chDB backend. Runs in the peers' venv (.venv-peers), timed as a whole by
bench/run.py.

    .venv-peers/bin/python bench/peer_cx_chdb.py CHDB_PATH DATABASE    (MYSQL_* from the env)

What it does: one `connectorx.read_sql(..., return_type="arrow")` of the 8 transaction columns,
the whole table as one Arrow table (connectorx's natural call: no chunking, so memory grows
with the table), then one `client.insert_arrow()` into a plain MergeTree table, created if
missing. What it does not: no transform, no keys, no dimensions, no checkpoint, no audit row.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import quote

COLUMNS = ("transaction_id, user_id, merchant_id, amount, status, transaction_time, "
           "created_at, updated_at")
TABLE = "transactions_raw"
DDL = """CREATE TABLE IF NOT EXISTS {database}.{table} (
    transaction_id String, user_id UInt32, merchant_id UInt32, amount Decimal(10, 2),
    status String, transaction_time DateTime, created_at DateTime64(6),
    updated_at DateTime64(6)
) ENGINE = MergeTree ORDER BY transaction_id"""


def source_url() -> str:
    env = os.environ
    user, password = quote(env["MYSQL_USER"], safe=""), quote(env["MYSQL_PASSWORD"], safe="")
    return (f"mysql://{user}:{password}@{env['MYSQL_HOST']}:{env['MYSQL_PORT']}"
            f"/{env['MYSQL_DATABASE']}?prefer_socket=false")


def main(path: str, database: str) -> None:
    import clickhouse_connect
    import connectorx as cx

    # TIMESTAMP columns are read in the session's time zone: UTC, as the pipeline reads them.
    table = cx.read_sql(source_url(), f"SELECT {COLUMNS} FROM transactions",
                        return_type="arrow", pre_execution_query=["SET time_zone = '+00:00'"])
    client = clickhouse_connect.get_client(interface="chdb", path=path)
    try:
        client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        client.command(DDL.format(database=database, table=TABLE))
        client.insert_arrow(TABLE, table, database=database)
    finally:
        client.close()


if __name__ == "__main__":
    main(*sys.argv[1:3])
