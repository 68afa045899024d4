"""Live binlog CDC on the real MariaDB and both ClickHouse engines: snapshot, stream, resume.

Every test has its own source database and warehouse database. The binlog is shared by every
test on the server; the reader keeps to its own database (only_schemas), so other traffic only
moves positions. The final check is always the same: the replicas (v_cdc_*) equal the source
tables row for row. chDB allows one process per folder: subprocess tests release it first.
"""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Iterator

import pymysql
import pytest

from ewallet_etl.config import Settings
from ewallet_etl.core.binlog_position import Position, version
from ewallet_etl.pipelines.binlog import PreflightError, StreamReport, run_binlog, server_identity
from ewallet_etl.sources.binlog import (
    StreamError,
    control_connection,
    master_position,
    open_reader,
    read_changes,
)
from ewallet_etl.sources.binlog_decode import fast_decoding
from ewallet_etl.state.positions import read_position, save_position
from ewallet_etl.warehouse import Warehouse, release_chdb
from tests.helpers import (
    ROOT,
    env_for,
    mysql_admin,
    mysql_exec,
    opened,
    settings_for,
    unique,
    warehouse_target,
)

pytestmark = pytest.mark.integration

EPOCH = datetime(1970, 1, 1)
CENT = Decimal("0.01")


# --- fixtures: a warehouse re-opened on demand (subprocesses close chDB under us) -------------

@pytest.fixture
def settings(stream_settings: Settings) -> Settings:
    """Short micro-batches; the warehouse re-opened on demand (conftest.stream_settings)."""
    return stream_settings


def query(settings: Settings, sql: str) -> list[tuple]:
    with opened(settings.warehouse) as wh:
        return wh.query(sql)


def saved_position(settings: Settings) -> Position:
    with opened(settings.warehouse) as wh:
        return read_position(wh, settings.cdc_stream_name).position


# --- comparing source and replica -------------------------------------------------------------

def _micros(value: datetime) -> int:
    return (value - EPOCH) // (datetime(1970, 1, 1, 0, 0, 0, 1) - EPOCH)


def source_state(db: str) -> dict[str, list[tuple]]:
    tx = mysql_exec(db, "SELECT transaction_id, user_id, merchant_id, amount, status, "
                        "transaction_time FROM transactions ORDER BY transaction_id")
    users = mysql_exec(db, "SELECT user_id, name, email, city, created_at, updated_at "
                           "FROM users ORDER BY user_id")
    merchants = mysql_exec(db, "SELECT merchant_id, name, category, city, created_at, "
                               "updated_at FROM merchants ORDER BY merchant_id")
    return {
        "transactions": [(t, u, m, a.quantize(CENT), s, str(tt)) for t, u, m, a, s, tt in tx],
        "users": [(*r[:4], _micros(r[4]), _micros(r[5])) for r in users],
        "merchants": [(*r[:4], _micros(r[4]), _micros(r[5])) for r in merchants],
    }


def replica_state(settings: Settings) -> dict[str, list[tuple]]:
    with opened(settings.warehouse) as wh:
        return _replica_state(wh)


def _replica_state(wh: Warehouse) -> dict[str, list[tuple]]:
    tx = wh.query("SELECT transaction_id, user_id, merchant_id, toString(amount), status, "
                  "toString(transaction_time) FROM analytics_dw.v_cdc_transactions "
                  "ORDER BY transaction_id")
    dims = {
        table: [tuple(r) for r in wh.query(
            f"SELECT {key}, name, {text}, city, created_at_us, updated_at_us "
            f"FROM analytics_dw.v_cdc_{table} ORDER BY {key}")]
        for table, key, text in (("users", "user_id", "email"),
                                 ("merchants", "merchant_id", "category"))
    }
    return {
        "transactions": [(t, u, m, Decimal(a).quantize(CENT), s, tt) for t, u, m, a, s, tt in tx],
        **dims,
    }


def assert_replica_equals_source(settings: Settings) -> None:
    source, replica = source_state(settings.mysql_database), replica_state(settings)
    for table in source:  # sorted here: MariaDB's collation and ClickHouse's bytes differ
        assert sorted(replica[table]) == sorted(source[table]), table
    assert len(source["transactions"]) > 0


def assert_saved_positions_are_boundaries(settings: Settings) -> None:
    """Every position ever saved starts a transaction (MariaDB opens each with a GTID event)
    or is where the binlog ended: never one in the middle of a transaction."""
    saved = query(settings, "SELECT DISTINCT visitParamExtractString(cursor, 'file'), "
                  "visitParamExtractUInt(cursor, 'pos') FROM analytics_dw.etl_state "
                  "WHERE kind = 'binlog' AND cursor != '{}'")
    assert saved
    for file, pos in saved:
        events = mysql_exec(settings.mysql_database, "SHOW BINLOG EVENTS IN %s FROM %s LIMIT 1",
                            (file, pos))
        assert events == [] or events[0][2] in ("Gtid", "Format_desc", "Rotate"), (pos, events)


# --- a writer making random changes -----------------------------------------------------------

STATUSES = ("SUCCESS", "FAILED", "PENDING", "REFUNDED")
NAMES = ("Ändi Prätama", "Budi 🙂 Santoso", "Citra 李", "Dewi ñ", "Eko \u05e9\u05dc\u05d5\u05dd")


class Writer(threading.Thread):
    """Random inserts, updates (key changes included), deletes, multi-row statements and
    rollbacks on the source, in transactions of 1-4 statements."""

    def __init__(self, db: str, seed: int, transactions: int | None = None) -> None:
        super().__init__(daemon=True)
        self.db, self.rng, self.limit = db, random.Random(seed), transactions
        self.stop = threading.Event()
        self.ids: list[str] = ["TX1001", "TX1003", "TX1004", "TX1008"]
        self.users, self.committed, self.counter, self.error = [1, 2, 3], 0, 0, None

    def run(self) -> None:
        conn = mysql_admin(self.db)
        conn.autocommit(False)
        try:
            while not self.stop.is_set() and (self.limit is None or self.committed < self.limit):
                try:
                    with conn.cursor() as cur:
                        for _ in range(self.rng.randint(1, 4)):
                            self.statement(cur)
                    conn.rollback() if self.rng.random() < 0.1 else conn.commit()
                    self.committed += 1
                except pymysql.err.IntegrityError:
                    conn.rollback()
        except Exception as exc:  # surfaced by the test
            self.error = exc
        finally:
            conn.close()

    def _new_tx(self) -> tuple:
        self.counter += 1
        tx_id = f"W{self.counter:06d}"
        self.ids.append(tx_id)
        r = self.rng
        return (tx_id, r.choice(self.users), r.randint(1, 3),
                Decimal(r.randint(1, 999_999_999)) / 100, r.choice(STATUSES),
                f"2025-0{r.randint(1, 9)}-1{r.randint(0, 9)} "
                f"1{r.randint(0, 9)}:0{r.randint(0, 9)}:00")

    def statement(self, cur: pymysql.cursors.Cursor) -> None:
        r, pick = self.rng, self.rng.random()
        insert = ("INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, status, "
                  "transaction_time) VALUES ")
        if pick < 0.35:
            cur.execute(insert + "(%s, %s, %s, %s, %s, %s)", self._new_tx())
        elif pick < 0.45:
            rows = [self._new_tx() for _ in range(r.randint(2, 8))]
            cur.execute(insert + ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(rows)),
                        [v for row in rows for v in row])
        elif pick < 0.65:
            cur.execute("UPDATE transactions SET status = %s, amount = amount + 0.01 "
                        "WHERE transaction_id = %s", (r.choice(STATUSES), r.choice(self.ids)))
        elif pick < 0.72:
            cur.execute("UPDATE transactions SET status = %s WHERE transaction_id IN %s",
                        (r.choice(STATUSES), tuple(r.sample(self.ids, min(5, len(self.ids))))))
        elif pick < 0.82:
            cur.execute("DELETE FROM transactions WHERE transaction_id = %s", (r.choice(self.ids),))
        elif pick < 0.86:  # a primary key change: the old key must leave the replica
            old = r.choice(self.ids)
            self.counter += 1
            new = f"K{self.counter:06d}"
            cur.execute("UPDATE transactions SET transaction_id = %s WHERE transaction_id = %s",
                        (new, old))
            self.ids.append(new)
        elif pick < 0.93:
            cur.execute("UPDATE users SET name = %s, city = %s WHERE user_id = %s",
                        (r.choice(NAMES), r.choice(NAMES), r.choice(self.users)))
        elif pick < 0.97:
            new_user = max(self.users) + 1
            cur.execute("INSERT INTO users (user_id, name, email) VALUES (%s, %s, %s)",
                        (new_user, r.choice(NAMES), f"u{new_user}@example.com"))
            self.users.append(new_user)
        else:
            cur.execute("UPDATE merchants SET category = %s WHERE merchant_id = %s",
                        (r.choice(NAMES), r.randint(1, 3)))

    def finish(self) -> None:
        self.stop.set()
        self.join(60)
        assert self.error is None, self.error


def source_end(settings: Settings) -> Position:
    conn = control_connection(settings)
    try:
        return master_position(conn)
    finally:
        conn.close()


# --- subprocess helpers -----------------------------------------------------------------------

def cdc_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {**env_for(settings), "CDC_BATCH_MS": str(settings.cdc_batch_ms),
           "CDC_BATCH_EVENTS": str(settings.cdc_batch_events), "LOG_LEVEL": "INFO", **extra}
    env.pop("ETL_KILL_AT", None)
    env.update(extra)
    return env


def start_stream(settings: Settings, *flags: str, **extra: str) -> subprocess.Popen:
    release_chdb()  # the child opens the chDB folder; this process must not hold it
    return subprocess.Popen(
        [sys.executable, str(ROOT / "cdc-stream.py"), "--source", "binlog", *flags],
        cwd=ROOT, env=cdc_env(settings, **extra), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)


def run_stream(settings: Settings, *flags: str, **extra: str) -> tuple[int, str]:
    proc = start_stream(settings, *flags, **extra)
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


# --- tests ------------------------------------------------------------------------------------

def test_snapshot_then_stream_equals_source(settings):
    first = run_binlog(settings)
    assert first.snapshot_rows == 10  # the seed: 3 users, 3 merchants, 4 transactions
    assert_replica_equals_source(settings)
    writer = Writer(settings.mysql_database, seed=1, transactions=300)
    writer.run()
    assert writer.error is None
    report = run_binlog(settings)
    assert report.snapshot_rows == 0 and report.events > 300
    assert_replica_equals_source(settings)


def test_follow_catches_up_with_a_concurrent_writer_and_stops_on_request(settings):
    stop, report = threading.Event(), StreamReport()
    follower = threading.Thread(target=run_binlog, daemon=True,
                                kwargs={"settings": settings, "follow": True, "stop": stop,
                                        "report": report})
    follower.start()
    writer = Writer(settings.mysql_database, seed=2)
    writer.start()
    time.sleep(4)
    writer.finish()
    target, deadline = source_end(settings), time.monotonic() + 60
    while (report.saved is None or report.saved < target) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert report.saved >= target, (report.saved, target)
    stop.set()
    follower.join(30)
    assert not follower.is_alive() and report.stop_reason == "stopped by signal"
    assert writer.committed > 20 and report.batches >= 2
    assert_replica_equals_source(settings)


@contextmanager
def replication_user(database: str, replication: bool = True) -> Iterator[tuple[str, str]]:
    """A user of its own (so its dump connections can be told apart) with the CDC's grants,
    or, with replication=False, only SELECT on the database (for the preflight)."""
    user, password = unique("ewt_repl")[:30], "pw_" + unique("x")
    admin = mysql_admin()
    try:
        with admin.cursor() as cur:
            for host in ("localhost", "127.0.0.1"):
                cur.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY %s", (password,))
                cur.execute(f"GRANT SELECT ON `{database}`.* TO '{user}'@'{host}'")
                if replication:
                    cur.execute(f"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO "
                                f"'{user}'@'{host}'")
        yield user, password
    finally:
        with admin.cursor() as cur:
            for host in ("localhost", "127.0.0.1"):
                cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
        admin.close()


def test_a_killed_dump_connection_restarts_from_the_saved_position(settings):
    """The server ends our dump (KILL, a network cut): the library would silently reconnect
    from wherever it was, maybe inside a transaction; the stream restarts from its saved
    position instead, and still ends equal to the source."""
    with replication_user(settings.mysql_database) as (user, password):
        cdc = replace(settings, mysql_user=user, mysql_password=password)
        stop, report = threading.Event(), StreamReport()
        follower = threading.Thread(target=run_binlog, daemon=True, kwargs={
            "settings": cdc, "follow": True, "stop": stop, "report": report})
        follower.start()
        writer = Writer(settings.mysql_database, seed=4)
        writer.start()
        killed, deadline = 0, time.monotonic() + 30
        while killed < 2 and time.monotonic() < deadline:
            time.sleep(1.5)
            for (thread_id,) in mysql_exec(
                    settings.mysql_database, "SELECT id FROM information_schema.PROCESSLIST "
                    "WHERE user = %s AND command = 'Binlog Dump'", (user,)):
                mysql_exec(settings.mysql_database, f"KILL {int(thread_id)}")
                killed += 1
        time.sleep(1)
        writer.finish()
        target, deadline = source_end(settings), time.monotonic() + 60
        while (report.saved is None or report.saved < target) and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        follower.join(30)
    assert killed == 2 and report.restarts >= 2 and report.saved >= target
    assert_replica_equals_source(settings)


def test_resume_honours_the_saved_position_on_mariadb(settings):
    """Events before the saved position are never read again (the library's MariaDB path
    would dump from the first binlog: every earlier change, of every test, again)."""
    run_binlog(settings)
    mysql_exec(settings.mysql_database, "UPDATE transactions SET status = 'REFUNDED'")
    first = run_binlog(settings)
    assert first.events == 4
    saved = saved_position(settings)
    mysql_exec(settings.mysql_database, "UPDATE transactions SET status = 'PENDING' "
                                        "WHERE transaction_id = 'TX1001'")
    second = run_binlog(settings)
    assert second.start == saved and second.events == 1
    (row_version,) = query(settings, "SELECT _version FROM analytics_dw.v_cdc_transactions "
                                     "WHERE transaction_id = 'TX1001'")[0]
    assert row_version > version(saved, 65535)
    third = run_binlog(settings)  # nothing new: nothing read, nothing applied
    assert third.events == 0
    assert_replica_equals_source(settings)


def test_types_arrive_exactly(settings):
    db = settings.mysql_database
    run_binlog(settings)
    mysql_exec(db, "ALTER TABLE users MODIFY city VARCHAR(100) NULL")  # a NULL must stay NULL
    mysql_exec(db, "INSERT INTO users (user_id, name, email, city, created_at, updated_at) VALUES "
                   "(10, 'Zoë 🙂 李小龍 שלום', 'z@example.com', NULL, "
                   "'2025-01-02 03:04:05.123456', '2025-01-02 03:04:05.000001')")
    mysql_exec(db, "INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, "
                   "status, transaction_time) VALUES ('T-max', 10, 1, 99999999.99, 'SUCCESS', "
                   "'2025-12-31 23:59:59'), ('T-min', 10, 2, 0.01, 'PENDING', "
                   "'2000-01-01 00:00:00'), ('T-éü', 10, 3, 12345.67, 'FAILED', "
                   "'2025-06-15 12:00:00')")
    run_binlog(settings)
    assert_replica_equals_source(settings)
    user = [r for r in replica_state(settings)["users"] if r[0] == 10]
    assert user == [(10, "Zoë 🙂 李小龍 שלום", "z@example.com", None,
                     1735787045123456, 1735787045000001)]


def test_unrelated_ddl_does_not_break_the_stream(settings):
    db = settings.mysql_database
    run_binlog(settings)
    other = unique("ewt_other")
    statements = [
        "CREATE TABLE audit_log (id INT PRIMARY KEY, note VARCHAR(20))",
        "INSERT INTO audit_log VALUES (1, 'a')",
        "INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, status, "
        "transaction_time) VALUES ('D1', 1, 1, 1.00, 'SUCCESS', '2025-01-01 00:00:00')",
        "ALTER TABLE audit_log ADD COLUMN extra INT NULL",
        "UPDATE transactions SET amount = 2.00 WHERE transaction_id = 'D1'",
        f"CREATE DATABASE `{other}`",
        f"CREATE TABLE `{other}`.transactions (transaction_id INT PRIMARY KEY)",  # same name
        f"INSERT INTO `{other}`.transactions VALUES (42)",
        "ALTER TABLE transactions ADD COLUMN note VARCHAR(20) NULL",  # the source table itself
        "INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, status, "
        "transaction_time, note) VALUES ('D2', 2, 2, 3.00, 'PENDING', '2025-01-02 00:00:00', 'x')",
        "DROP TABLE audit_log",
        f"DROP DATABASE `{other}`",
        "DELETE FROM transactions WHERE transaction_id = 'TX1004'",
    ]
    for statement in statements:
        mysql_exec(db, statement)
    report = run_binlog(settings)
    assert report.events == 4
    assert_replica_equals_source(settings)


def test_purged_position_is_refused_until_resnapshot(settings):
    db = settings.mysql_database
    run_binlog(settings)
    with opened(settings.warehouse) as wh:
        saved = read_position(wh, settings.cdc_stream_name)
        # Simulate a purge: the saved position names a binlog file the server no longer has.
        save_position(wh, settings.cdc_stream_name, Position.of("binlog.000000", 4), 1,
                      saved.version)
    mysql_exec(db, "DELETE FROM transactions WHERE transaction_id = 'TX1003'")
    mysql_exec(db, "INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, "
                   "status, transaction_time) VALUES ('R1', 1, 1, 5.00, 'SUCCESS', "
                   "'2025-01-01 00:00:00')")
    with pytest.raises(PreflightError) as refused:
        run_binlog(settings)
    assert "no longer on the server" in str(refused.value) and "--resnapshot" in str(refused.value)
    report = run_binlog(settings, resnapshot=True)
    assert report.snapshot_rows == 10  # 4 seed - TX1003 + R1 = 4 transactions
    assert_replica_equals_source(settings)  # TX1003 (deleted while away) is gone too


def test_preflight_refuses_a_user_without_replication_privileges(source_db, chdb_path):
    target = warehouse_target("clickhouse-server", unique("ewt_dw"), chdb_path)
    try:
        with replication_user(source_db, replication=False) as (user, password):
            restricted = replace(settings_for(source_db, target), mysql_user=user,
                                 mysql_password=password)
            with pytest.raises(PreflightError) as refused:
                run_binlog(restricted)
            problems = refused.value.problems
            assert len(problems) == 2
            assert "GRANT REPLICATION SLAVE ON *.* TO" in problems[0]
            assert "GRANT REPLICATION CLIENT ON *.* TO" in problems[1]
            code, out = run_stream(restricted)
            assert code == 2 and "binlog preflight: missing privilege REPLICATION SLAVE" in out
    finally:
        with opened(target) as wh:
            wh.execute("DROP DATABASE IF EXISTS analytics_dw")


def test_sigterm_finishes_the_batch_and_saves_the_position(settings):
    proc = start_stream(settings, "--follow")
    time.sleep(4)  # snapshot done, streaming
    mysql_exec(settings.mysql_database, "UPDATE transactions SET status = 'REFUNDED' "
                                        "WHERE transaction_id = 'TX1008'")
    end = source_end(settings)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "stopped by signal" in out and "rows/s=" in out
    assert saved_position(settings) >= end
    assert_replica_equals_source(settings)


def test_fast_decoding_equals_the_library(source_db, chdb_path):
    """binlog_decode's compiled readers give exactly the library's values on real events:
    negative and extreme decimals, every fsp, zero dates, NULLs, long and unicode strings,
    and a JSON column (decoded by the library's fallback)."""
    settings = settings_for(source_db, warehouse_target("chdb", "unused", chdb_path))
    statements = [
        "SET SESSION sql_mode = ''",
        "ALTER TABLE users MODIFY city VARCHAR(100) NULL, MODIFY created_at DATETIME(3) NOT NULL",
        "ALTER TABLE merchants ADD COLUMN tags JSON NULL",
        "INSERT INTO users (user_id, name, email, city, created_at, updated_at) VALUES "
        "(20, 'Zoë 🙂', %s, NULL, '2025-01-02 03:04:05.123', '2025-01-02 03:04:05.000001'), "
        "(21, '', 'e', 'c', '1970-01-01 00:00:00', '9999-12-31 23:59:59.999999'), "
        "(22, 'z', 'e', '', '0000-00-00 00:00:00', '0000-00-00 00:00:00')",
        "INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, status, "
        "transaction_time) VALUES ('N1', 20, 1, -99999999.99, 'SUCCESS', '2025-01-01'), "
        "('N2', 20, 1, -0.01, 'FAILED', '2025-01-01'), ('N3', 20, 1, 0, 'PENDING', '2025-01-01'),"
        " ('N4', 21, 2, 99999999.99, 'REFUNDED', '2025-01-01'), ('N5', 21, 2, -12345.6, "
        "'SUCCESS', '2025-01-01'), ('N6', 21, 2, 1000000.05, 'SUCCESS', '2025-01-01')",
        "UPDATE transactions SET amount = -amount, transaction_id = CONCAT(transaction_id, 'x') "
        "WHERE transaction_id IN ('N1', 'N5')",
        "DELETE FROM transactions WHERE transaction_id = 'N2'",
        "UPDATE merchants SET tags = '{\"a\": [1, \"ü\"]}', city = NULL WHERE merchant_id = 1",
    ]
    start = source_end(settings)
    conn = mysql_admin(source_db)
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement, ("x" * 300 + "ü",) if "%s" in statement else None)
    conn.close()
    end = source_end(settings)

    def read(decoding) -> list:
        server_id, host = server_identity(settings)
        reader = open_reader(settings, server_id, start, host, follow=False, heartbeat=1)
        try:
            with decoding:
                return [change for kind, payload, _ in read_changes(reader, start)
                        if kind == "rows" for change in payload if change.version < version(end)]
        finally:
            reader.close()

    fast, library = read(fast_decoding()), read(contextlib.nullcontext())
    assert len(library) == 3 + 6 + 4 + 1 + 1  # users, inserts, 2 key changes, delete, merchant
    assert fast == library
    assert [c.row["amount"] for c in library if c.key == "N5x"] == [Decimal("12345.60")]
    # updated_at is TIMESTAMP(6): 9999-12-31 is out of its range, stored as zero -> None
    assert library[1].row["updated_at"] is None
    assert library[2].row["created_at"] is None  # a zero date


def test_an_incomplete_row_image_stops_the_stream(settings):
    run_binlog(settings)
    conn = mysql_admin(settings.mysql_database)
    with conn.cursor() as cur:
        cur.execute("SET SESSION binlog_row_image = 'MINIMAL'")
        cur.execute("UPDATE transactions SET status = 'REFUNDED' WHERE transaction_id = 'TX1001'")
    conn.close()
    with pytest.raises(StreamError, match="incomplete row image"):
        run_binlog(settings)


@pytest.mark.slow
def test_sigkill_at_any_moment_and_restarts_still_equal_the_source(settings):
    settings = replace(settings, cdc_batch_events=200)
    writer = Writer(settings.mysql_database, seed=3)
    writer.start()
    # Killed inside the first snapshot (no position saved yet), then between an applied batch
    # and its position, then from outside at random moments.
    kills = [{"ETL_KILL_AT": "binlog_snapshot_chunk", "ETL_CHUNK_ROWS": "3"},
             {"ETL_KILL_AT": "binlog_before_save"}]
    kills += [{}] * 4
    rng, outputs = random.Random(5), []
    try:
        for extra in kills:
            proc = start_stream(settings, "--follow", **extra)
            try:
                proc.wait(timeout=30 if extra else rng.uniform(1.5, 4.0))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == -signal.SIGKILL, out
            outputs.append(out)
    finally:
        writer.finish()
    assert "binlog_snapshot_chunk: killing myself" in outputs[0]
    assert "binlog_before_save: killing myself" in outputs[1]
    assert sum("batch: events=" in out for out in outputs[2:]) >= 2  # killed while streaming
    code, out = run_stream(settings)  # bounded: catch up to the end and exit
    assert code == 0, out
    assert writer.committed > 50
    assert_saved_positions_are_boundaries(settings)
    assert_replica_equals_source(settings)


@pytest.mark.slow
def test_a_200k_row_transaction_replicates(settings):
    db = settings.mysql_database
    run_binlog(settings)
    before = source_end(settings)
    mysql_exec(db, "INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, "
                   "status, transaction_time) SELECT CONCAT('BIG', seq), 1 + seq % 3, "
                   "1 + seq % 3, (seq % 1000000) / 100 + 0.01, 'SUCCESS', "
                   "'2025-03-01 00:00:00' FROM seq_1_to_200000")
    after = source_end(settings)
    report = run_binlog(settings)
    assert report.events == 200_000 and report.batches >= 200_000 // settings.cdc_batch_events
    print(f"200k-row transaction: {report.summary()}")
    assert report.saved >= after > before
    assert_saved_positions_are_boundaries(settings)  # none inside the 200k-row transaction
    assert_replica_equals_source(settings)
