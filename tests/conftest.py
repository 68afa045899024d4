"""Fixtures on the real servers started by scripts/stack.sh (never mocks).

A missing server is an error, not a skip: the suite proves nothing without them.
Each test gets its own source database and warehouse database; the warehouse fixture is
parametrised over the ClickHouse server (18.16 here) and embedded chDB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from ewallet_etl.config import Settings
from ewallet_etl.sources import mysql as source_mysql
from ewallet_etl.warehouse import WAREHOUSE_DDL, ensure_schema, release_chdb
from tests.helpers import (
    SOURCE_DDL,
    mysql_admin,
    open_warehouse,
    opened,
    run_sql_file,
    settings_for,
    unique,
    warehouse_target,
)

ENGINES = ["clickhouse-server", "chdb"]


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("chdb")
    yield path
    release_chdb()


@pytest.fixture
def source_db() -> Iterator[str]:
    """A fresh source database with DDL-MySQL-Source.sql (schema + seed) applied."""
    name = unique("ewt_src")
    conn = mysql_admin()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    run_sql_file(mysql_admin(name), SOURCE_DDL)
    yield name
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def settings(source_db: str, engine: str, chdb_path: Path) -> Iterator[Settings]:
    """Settings for one test: its own source database and its own warehouse database."""
    target = warehouse_target(engine, unique("ewt_dw"), chdb_path)
    wh = open_warehouse(target)
    ensure_schema(wh, WAREHOUSE_DDL)
    yield settings_for(source_db, target)
    wh.execute("DROP DATABASE IF EXISTS analytics_dw" + (" SYNC" if engine == "chdb" else ""))
    wh.close()


@pytest.fixture
def stream_settings(source_db: str, engine: str, chdb_path: Path) -> Iterator[Settings]:
    """Settings for the CDC tests: short micro-batches, and the warehouse opened per block
    (`opened`): a subprocess may take the chDB folder in between."""
    target = warehouse_target(engine, unique("ewt_dw"), chdb_path)
    with opened(target) as wh:
        ensure_schema(wh, WAREHOUSE_DDL)
    yield settings_for(source_db, target, cdc_batch_ms=200)
    with opened(target) as wh:
        wh.execute("DROP DATABASE IF EXISTS analytics_dw" + (" SYNC" if engine == "chdb" else ""))


@pytest.fixture
def wh(settings: Settings):
    warehouse = open_warehouse(settings.warehouse)
    yield warehouse
    warehouse.close()


@pytest.fixture(autouse=True)
def own_transactions_only(monkeypatch, request):
    """The INNODB_TRX cap counts every open transaction on the server, and this server is shared
    with other people's tests: in-process runs here count only sessions on this test's source
    database (the production query plus that filter), so their transactions cannot hold ours."""
    if "source_db" not in request.fixturenames:
        return
    database = request.getfixturevalue("source_db")
    real = source_mysql.oldest_open_transaction
    monkeypatch.setattr(source_mysql, "oldest_open_transaction",
                        lambda conn: real(conn, database=database))
