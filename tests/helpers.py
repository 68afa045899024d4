"""Test helpers: a unique source database and warehouse per test, on the real local servers."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

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


# --- batch correctness and fault tests (issue 3) ---------------------------------------------

def generate_transactions(database: str, rows: int, prefix: str = "B") -> None:
    """`rows` valid transactions, made by MariaDB itself from a SEQUENCE table (fast).

    Spread over 60 days of 2025, users and merchants 1-3, all four statuses, amounts with cents.
    """
    mysql_exec(database, (
        "INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, status, "
        "transaction_time) "
        "SELECT CONCAT(%s, LPAD(seq, 7, '0')), 1 + MOD(seq, 3), 1 + MOD(seq DIV 3, 3), "
        "MOD(seq * 37, 200000) + MOD(seq, 100) / 100, "
        "ELT(1 + MOD(seq, 4), 'SUCCESS', 'FAILED', 'PENDING', 'REFUNDED'), "
        "TIMESTAMP('2025-01-01') + INTERVAL MOD(seq, 60) DAY + INTERVAL MOD(seq * 7, 86400) SECOND "
        f"FROM seq_1_to_{int(rows)}"
    ), (prefix,))


def source_totals(database: str) -> tuple[int, Decimal, int, Decimal]:
    """(count, sum(amount)) of all transactions and of the SUCCESS ones, in the source."""
    ((n, total, sales, sales_total),) = mysql_exec(database, (
        "SELECT count(*), COALESCE(sum(amount), 0), COALESCE(sum(status = 'SUCCESS'), 0), "
        "COALESCE(sum(IF(status = 'SUCCESS', amount, 0)), 0) FROM transactions"
    ))
    return int(n), as_decimal(total), int(sales), as_decimal(sales_total)


def warehouse_totals(wh: Warehouse) -> tuple[int, Decimal, int, Decimal]:
    """The same four numbers from the warehouse's current rows (v_fact_sales, FINAL)."""
    ((n, total, sales, sales_total),) = wh.query(
        "SELECT count(), sum(amount), countIf(status = 'SUCCESS'), "
        "sumIf(amount, status = 'SUCCESS') FROM analytics_dw.v_fact_sales"
    )
    return int(n), as_decimal(total), int(sales), as_decimal(sales_total)


def checkpoint_of(settings: Settings) -> Any:
    """The saved checkpoint (naive UTC DATETIME(6)), or None when the row is missing."""
    rows = mysql_exec(settings.mysql_database,
                      "SELECT last_synced_at FROM checkpoint WHERE pipeline_name = %s",
                      (settings.pipeline_name,))
    return rows[0][0] if rows else None


class ProxyProcess:
    """A `TcpProxy` in its own process: connectorx holds the GIL while it connects and reads, so
    a proxy thread inside the reading process would stall with it. `kill()` ends it at once
    (SIGKILL: every forwarded connection is cut, the port stops listening)."""

    def __init__(self, host: str, port: int, break_after: int | None = None,
                 watch: str = "down", action: str = "die") -> None:
        import subprocess
        import sys

        code = ("import sys; from tests.helpers import serve_proxy; "
                "serve_proxy(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code, host, str(port), str(break_after or ""), watch, action],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )
        self.port = int(self._proc.stdout.readline())

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._proc.stdout.close()

    def __enter__(self) -> "ProxyProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.kill()


def serve_proxy(host: str, port: int, break_after: str, watch: str, action: str) -> None:
    """Entry point of `ProxyProcess`: print the port, forward until killed (or dead)."""
    import time

    proxy = TcpProxy(host, port, int(break_after) if break_after else None, watch, action)
    print(proxy.port, flush=True)
    while proxy._alive:
        time.sleep(0.05)


class TcpProxy:
    """A TCP forwarder to a real server, which a test breaks on purpose.

    Counts the bytes it forwards in one direction (`watch`: "down" = server to client, "up" =
    client to server). After `break_after` bytes it acts once: "die" closes every connection and
    stops listening (the server looks gone: new connections are refused); "drop" closes the
    connections open at that moment and keeps listening (a network blip). `kill()` dies now.
    """

    def __init__(self, host: str, port: int, break_after: int | None = None,
                 watch: str = "down", action: str = "die") -> None:
        import socket
        import threading

        self.target = (host, port)
        self.break_after, self.watch, self.action = break_after, watch, action
        self.forwarded = 0
        self.broken = False
        self._lock = threading.Lock()
        self._conns: list = []
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._alive = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while self._alive:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, "down"),
                             daemon=True).start()

    def _pump(self, src: Any, dst: Any, direction: str) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                if direction == self.watch and self._count(len(data)):
                    self._break()
                    return
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                _close(sock)

    def _count(self, n: int) -> bool:
        with self._lock:
            self.forwarded += n
            due = (self.break_after is not None and not self.broken
                   and self.forwarded >= self.break_after)
            if due:
                self.broken = True
            return due

    def _break(self) -> None:
        if self.action == "die":
            self.kill()
        else:
            self._close_connections()

    def _close_connections(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for sock in conns:
            _close(sock)

    def kill(self) -> None:
        self._alive = False
        _close(self._listener)
        self._close_connections()


def _close(sock: Any) -> None:
    import socket

    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


# `etl_pipeline.py` run as __main__, with the INNODB_TRX cap narrowed to sessions on the test's
# source database: the test server is shared, and other people's open transactions would hold
# the window back at random (the production query runs, plus that filter).
OWN_TRANSACTIONS_BOOT = (
    "import runpy, sys\n"
    "from ewallet_etl.sources import mysql as source_mysql\n"
    "real, database = source_mysql.oldest_open_transaction, sys.argv.pop(1)\n"
    "source_mysql.oldest_open_transaction = lambda conn: real(conn, database=database)\n"
    "sys.argv[0] = 'etl_pipeline.py'\n"
    "runpy.run_path('etl_pipeline.py', run_name='__main__')\n"
)


def run_cli(settings: Settings, *args: str, kill_at: str | None = None,
            timeout: float = 180, release: bool = True, **env: str) -> Any:
    """Run `python etl_pipeline.py ARGS` against these settings as a separate process.

    For a chDB target this process first lets go of the folder (one process at a time; unless
    `release` is False) and the caller reopens it with `open_warehouse` afterwards.
    """
    import subprocess
    import sys

    from ewallet_etl.warehouse import release_chdb

    if release and settings.warehouse.kind == "chdb":
        release_chdb()
    full_env = {**env_for(settings), **env}
    full_env.pop("ETL_KILL_AT", None)
    if kill_at:
        full_env["ETL_KILL_AT"] = kill_at
    command = [sys.executable, "-c", OWN_TRANSACTIONS_BOOT, settings.mysql_database, *args]
    return subprocess.run(command, cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


@contextmanager
def opened(target: WarehouseTarget) -> Iterator[Warehouse]:
    """A warehouse for one block (re-opens chDB if a subprocess made this process let go)."""
    wh = connect(target)
    try:
        yield wh
    finally:
        wh.close()
