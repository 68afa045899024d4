"""Test helpers: a unique source database and warehouse per test, on the real local servers."""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pymysql

from ewallet_etl.config import Settings, WarehouseTarget, parse_clickhouse_url
from ewallet_etl.warehouse import Warehouse, connect, split_statements

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DDL = ROOT / "DDL-MySQL-Source.sql"
INCREMENTAL_BATCH = ROOT / "seed" / "incremental_batch.sql"
SERVER_URL = os.environ.get(
    "TEST_CLICKHOUSE_URL", "clickhouse://etl:etl_password@127.0.0.1:19000/analytics_dw"
)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def mysql_admin(database: str | None = None) -> pymysql.connections.Connection:
    base = Settings.from_env()
    return pymysql.connect(
        host=base.mysql_host, port=base.mysql_port, user=base.mysql_user,
        password=base.mysql_password, database=database, autocommit=True,
        charset="utf8mb4", init_command="SET time_zone = '+00:00'",
    )


def run_sql_file(conn: pymysql.connections.Connection, path: Path) -> None:
    with conn.cursor() as cur:
        for statement in split_statements(path.read_text()):
            cur.execute(statement.rstrip(";"))


def mysql_exec(database: str, sql: str, params: Any = None) -> list[tuple]:
    conn = mysql_admin(database)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        conn.close()


def warehouse_target(engine: str, database: str, chdb_path: Path) -> WarehouseTarget:
    if engine == "chdb":
        return WarehouseTarget(kind="chdb", database=database, path=str(chdb_path))
    return replace(parse_clickhouse_url(SERVER_URL), database=database)


def settings_for(source_db: str, target: WarehouseTarget, **overrides: Any) -> Settings:
    base = Settings.from_env({**os.environ, "ETL_LAG_SECONDS": "0", "ETL_OVERLAP_SECONDS": "0",
                              "ETL_MAX_RETRIES": "1"})
    return replace(base, mysql_database=source_db, warehouse=target, **overrides)


def env_for(settings: Settings) -> dict[str, str]:
    """Environment for running the entry points as subprocesses against these settings."""
    t = settings.warehouse
    url = (f"chdb://{t.path}?database={t.database}" if t.kind == "chdb"
           else f"clickhouse://{t.user}:{t.password}@{t.host}:{t.port}/{t.database}")
    return {
        **os.environ,
        "MYSQL_HOST": settings.mysql_host, "MYSQL_PORT": str(settings.mysql_port),
        "MYSQL_USER": settings.mysql_user, "MYSQL_PASSWORD": settings.mysql_password,
        "MYSQL_DATABASE": settings.mysql_database, "CLICKHOUSE_URL": url,
        "ETL_LAG_SECONDS": str(settings.lag_seconds),
        "ETL_OVERLAP_SECONDS": str(settings.overlap_seconds),
        "ETL_MAX_RETRIES": str(settings.max_retries),
        "ETL_CHUNK_ROWS": str(settings.chunk_rows),
    }


def fact_state(wh: Warehouse) -> list[tuple]:
    """The current fact rows, deduplicated at read time, in a stable order."""
    return wh.query(
        "SELECT transaction_id, user_key, merchant_key, toString(amount), amount_category, "
        "status, toString(transaction_time), toString(transaction_date) "
        "FROM analytics_dw.v_fact_sales ORDER BY transaction_id"
    )


def as_decimal(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def open_warehouse(target: WarehouseTarget) -> Warehouse:
    return connect(target)
