"""Binlog CDC and the statements that change rows without row events (issue 12, case 6), XA
transactions, and TIMESTAMP(6) change columns written from another time zone (case 2).

Real MariaDB 10.11 (binlog ROW/FULL) and both ClickHouse engines. The binlog is shared with
every other test on the server, so positions are found by looking for this test's own database
(and unique XA ids) in SHOW BINLOG EVENTS. The end check is always the same: the replica views
equal the committed source rows, row for row, and the transactions' count and sum agree.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager, suppress
from decimal import Decimal
from typing import Iterator

import pymysql
import pytest

from ewallet_etl.config import Settings
from ewallet_etl.core.binlog_position import Position, version
from ewallet_etl.pipelines.binlog import EXIT_OK, EXIT_USAGE, binlog_main, run_binlog
from ewallet_etl.state.positions import save_position
from tests.helpers import (
    SOURCE_DDL,
    as_decimal,
    mysql_admin,
    mysql_exec,
    run_sql_file,
    unique,
)
from tests.integration.test_binlog_cdc import (
    assert_replica_equals_source,
    opened,
    query,
    run_stream,
    saved_position,
    source_end,
)

pytestmark = pytest.mark.integration

INSERT_TX = ("INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, status, "
             "transaction_time) VALUES (%s, %s, %s, %s, %s, '2025-02-01 10:00:00')")


@pytest.fixture
def settings(stream_settings: Settings) -> Settings:
    """Short micro-batches; the warehouse re-opened on demand (conftest.stream_settings)."""
    return stream_settings


# --- helpers ----------------------------------------------------------------------------------

def totals_match(settings: Settings) -> tuple[int, Decimal]:
    """(count, sum of amount) of the current transactions: source and replica must agree."""
    ((n, total),) = mysql_exec(settings.mysql_database,
                               "SELECT count(*), COALESCE(sum(amount), 0) FROM transactions")
    ((rn, rtotal),) = query(settings, "SELECT count(), sum(amount) "
                                      "FROM analytics_dw.v_cdc_transactions")
    assert (int(rn), as_decimal(rtotal)) == (int(n), as_decimal(total))
    return int(n), as_decimal(total)


def events_since(settings: Settings, start: Position) -> list[tuple]:
    """(pos, type, end_pos, info) of every binlog event from `start` (same file)."""
    rows = mysql_exec(settings.mysql_database, "SHOW BINLOG EVENTS IN %s FROM %s",
                      (start.file, start.pos))
    return [(int(r[1]), r[2], int(r[4]), r[5]) for r in rows]


def find_event(events: list[tuple], *needles: str) -> int:
    """Index of the first event whose info holds every needle."""
    return next(i for i, e in enumerate(events) if all(n in e[3] for n in needles))


def vers(settings: Settings, key: str) -> list[tuple]:
    """(_version, _deleted) of a transaction's current replica row, deleted or not."""
    with opened(settings.warehouse) as wh:
        return [tuple(r) for r in wh.query(
            "SELECT _version, _deleted FROM analytics_dw.cdc_transactions FINAL "
            "WHERE transaction_id = {key:String}", {"key": key})]


def main(settings: Settings, caplog: pytest.LogCaptureFixture, **flags: bool) -> tuple[int, list]:
    """binlog_main in this process: (exit code, its ERROR lines)."""
    caplog.clear()
    with caplog.at_level(logging.INFO):
        code = binlog_main(settings, **flags)
    return code, [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# --- TRUNCATE ---------------------------------------------------------------------------------

def test_truncate_is_replicated_and_later_rows_show(settings, caplog):
    db = settings.mysql_database
    run_binlog(settings)
    before = source_end(settings)
    # P1 and the update sit in the batch being built when the TRUNCATE arrives: they must land
    # first and then be tombstoned with everything else.
    mysql_exec(db, INSERT_TX, ("P1", 1, 1, "7.00", "SUCCESS"))
    mysql_exec(db, "UPDATE transactions SET amount = 1.00 WHERE transaction_id = 'TX1001'")
    mysql_exec(db, "TRUNCATE TABLE transactions")
    mysql_exec(db, INSERT_TX, ("A1", 1, 2, "11.00", "SUCCESS"))
    mysql_exec(db, INSERT_TX, ("TX1003", 2, 2, "12.50", "PENDING"))  # a truncated key comes back
    conn = mysql_admin(db)
    with conn.cursor() as cur:  # merchants is referenced by a foreign key
        cur.execute("SET SESSION foreign_key_checks = 0")
        cur.execute("TRUNCATE merchants")
        cur.execute("SET SESSION foreign_key_checks = 1")
    conn.close()
    mysql_exec(db, "INSERT INTO merchants (merchant_id, name) VALUES (2, 'Tokopedia'), (7, 'New')")
    report = run_binlog(settings)
    assert report.events == 6  # row changes; the TRUNCATEs' tombstones are not events
    assert_replica_equals_source(settings)
    assert totals_match(settings) == (2, Decimal("23.50"))

    events = events_since(settings, before)
    truncate = events[find_event(events, f"`{db}`", "TRUNCATE TABLE transactions")]
    truncated_at = version(Position.of(before.file, truncate[2]))
    assert vers(settings, "TX1001") == [(truncated_at, 1)]
    assert vers(settings, "P1") == [(truncated_at, 1)]
    assert vers(settings, "TX1003")[0][0] > truncated_at

    assert run_binlog(settings).events == 0  # a second run: nothing new, same state
    assert_replica_equals_source(settings)
    with opened(settings.warehouse) as wh:  # replay from before the TRUNCATE: idempotent
        state = query(settings, "SELECT max(_version) FROM analytics_dw.etl_state "
                                "WHERE kind = 'binlog'")[0][0]
        save_position(wh, settings.cdc_stream_name, before, 1, int(state))
    run_binlog(settings)
    assert_replica_equals_source(settings)
    assert totals_match(settings) == (2, Decimal("23.50"))
    code, errors = main(settings, caplog, resnapshot=True)
    assert (code, errors) == (EXIT_OK, [])
    assert_replica_equals_source(settings)
    assert totals_match(settings) == (2, Decimal("23.50"))


# --- statements the replica cannot follow: stop, position before them, --resnapshot ------------

STATEMENT = "SET SESSION binlog_format = 'STATEMENT'"
STOPPERS = [
    pytest.param([STATEMENT, INSERT_TX % ("'ST1'", 1, 1, "'9.00'", "'SUCCESS'")],
                 "statement-based INSERT", "transactions", "INSERT INTO transactions", id="insert"),
    pytest.param([STATEMENT, "UPDATE users SET city = 'Medan' WHERE user_id = 2"],
                 "statement-based UPDATE", "users", "UPDATE users", id="update"),
    pytest.param([STATEMENT, "DELETE FROM transactions WHERE transaction_id = 'TX1004'"],
                 "statement-based DELETE", "transactions", "DELETE FROM", id="delete"),
    pytest.param([STATEMENT, "REPLACE INTO merchants (merchant_id, name) VALUES (9, 'Kopi')"],
                 "statement-based REPLACE", "merchants", "REPLACE INTO", id="replace"),
    pytest.param(["CREATE TABLE m_new LIKE merchants",
                  "INSERT INTO m_new SELECT * FROM merchants WHERE merchant_id < 3",
                  "UPDATE m_new SET name = 'Renamed'",
                  "RENAME TABLE merchants TO m_old, m_new TO merchants"],
                 "RENAME TABLE", "merchants", "RENAME TABLE", id="rename"),
    pytest.param(["CREATE TABLE scratch (a INT)", "DROP TABLE scratch, transactions"],
                 "DROP TABLE", "transactions", "DROP TABLE", id="drop"),
]


@pytest.mark.parametrize("statements, kind, table, needle", STOPPERS)
def test_a_statement_without_row_events_stops_the_stream(settings, caplog, statements, kind,
                                                         table, needle):
    db = settings.mysql_database
    run_binlog(settings)
    mysql_exec(db, INSERT_TX, ("R1", 1, 1, "3.00", "SUCCESS"))  # applied: before the stop
    before = source_end(settings)
    conn = mysql_admin(db)
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    conn.close()
    if kind != "DROP TABLE":
        mysql_exec(db, INSERT_TX, ("R2", 2, 2, "4.00", "SUCCESS"))  # after the stop: waits

    events = events_since(settings, before)
    stop_at = next(i for i, e in enumerate(events)
                   if e[1] == "Query" and needle in e[3] and f"`{db}`" in e[3])
    statement_pos = Position.of(before.file, events[stop_at][0])
    group_start = Position.of(before.file, events[stop_at - 1][0])  # its GTID event
    assert events[stop_at - 1][1] == "Gtid"

    for _ in range(2):  # stopped, and stopped again at the same place: never skipped
        code, errors = main(settings, caplog)
        assert code == EXIT_USAGE
        assert len(errors) == 1, errors
        assert f"{kind} on {table} at {statement_pos}" in errors[0]
        assert f"position saved at {group_start}" in errors[0]
        assert "cdc-stream.py --source binlog --resnapshot" in errors[0]
        assert saved_position(settings) == group_start
        keys = {r[0] for r in query(settings, "SELECT transaction_id "
                                              "FROM analytics_dw.v_cdc_transactions")}
        assert "R1" in keys and "R2" not in keys

    if kind == "DROP TABLE":  # the way forward: the table is back, then --resnapshot
        run_sql_file(mysql_admin(db), SOURCE_DDL)
    code, errors = main(settings, caplog, resnapshot=True)
    assert (code, errors) == (EXIT_OK, [])
    assert_replica_equals_source(settings)
    totals_match(settings)
    assert saved_position(settings) > statement_pos  # the snapshot is past the statement


# --- XA: held from PREPARE to COMMIT, dropped on ROLLBACK ------------------------------------

@contextmanager
def prepared_xa(db: str, xid: str) -> Iterator[None]:
    """An XA transaction prepared on the source: a new sale X1 and an update of TX1001.
    Rolled back on the way out if the test did not resolve it (locks on a shared server)."""
    conn = mysql_admin(db)
    with conn.cursor() as cur:
        cur.execute("XA START %s", (xid,))
        cur.execute(INSERT_TX, ("X1", 3, 3, "500.00", "SUCCESS"))
        cur.execute("UPDATE transactions SET amount = 1.00 WHERE transaction_id = 'TX1001'")
        cur.execute("XA END %s", (xid,))
        cur.execute("XA PREPARE %s", (xid,))
    conn.close()
    try:
        yield
    finally:
        with suppress(pymysql.MySQLError):  # XAER_NOTA: the test resolved it
            mysql_exec(db, "XA ROLLBACK %s", (xid,))


def xa_positions(settings: Settings, before: Position, xid: str) -> tuple[Position, int]:
    """(where the XA's event group starts, version of its Write_rows event)."""
    events = events_since(settings, before)
    hex_xid = xid.encode().hex()
    start = next(i for i, e in enumerate(events) if e[1] == "Gtid" and "XA START" in e[3]
                 and hex_xid in e[3].lower())
    rows = next(e for e in events[start:] if e[1].startswith("Write_rows"))
    return Position.of(before.file, events[start][0]), version(Position.of(before.file, rows[2]))


@pytest.mark.parametrize("resolution", ["COMMIT", "ROLLBACK"])
def test_an_xa_transaction_resolved_before_the_run(settings, resolution):
    db, xid = settings.mysql_database, unique("xa")
    run_binlog(settings)
    with prepared_xa(db, xid):
        mysql_exec(db, INSERT_TX, ("N1", 1, 1, "2.00", "SUCCESS"))  # between PREPARE and COMMIT
        mysql_exec(db, f"XA {resolution} %s", (xid,))
    run_binlog(settings)
    assert_replica_equals_source(settings)
    expected = (6, Decimal("225503.00")) if resolution == "COMMIT" else (5, Decimal("275002.00"))
    assert totals_match(settings) == expected
    assert bool(vers(settings, "X1")) == (resolution == "COMMIT")


def test_xa_commit_one_phase_is_an_ordinary_commit(settings):
    db, xid = settings.mysql_database, unique("xa")
    run_binlog(settings)
    conn = mysql_admin(db)
    with conn.cursor() as cur:
        cur.execute("XA START %s", (xid,))
        cur.execute(INSERT_TX, ("X1", 3, 3, "500.00", "SUCCESS"))
        cur.execute("XA END %s", (xid,))
        cur.execute("XA COMMIT %s ONE PHASE", (xid,))
    conn.close()
    run_binlog(settings)
    assert_replica_equals_source(settings)
    assert totals_match(settings) == (5, Decimal("275500.00"))


@pytest.mark.parametrize("resolution", ["COMMIT", "ROLLBACK"])
def test_an_xa_transaction_resolved_after_the_stream_stopped(settings, caplog, resolution):
    db, xid = settings.mysql_database, unique("xa")
    run_binlog(settings)
    before = source_end(settings)
    with prepared_xa(db, xid):
        xa_start, rows_version = xa_positions(settings, before, xid)
        mysql_exec(db, INSERT_TX, ("N1", 1, 1, "2.00", "SUCCESS"))
        for _ in range(2):  # prepared, not resolved: invisible, and the position waits for it
            code, errors = main(settings, caplog)
            assert (code, errors) == (EXIT_OK, [])
            assert_replica_equals_source(settings)
            assert totals_match(settings) == (5, Decimal("275002.00"))
            assert vers(settings, "X1") == []
            assert saved_position(settings) == xa_start
        mysql_exec(db, f"XA {resolution} %s", (xid,))
    mysql_exec(db, INSERT_TX, ("N2", 2, 2, "3.00", "SUCCESS"))
    code, errors = main(settings, caplog)
    assert (code, errors) == (EXIT_OK, [])
    assert_replica_equals_source(settings)
    if resolution == "COMMIT":
        assert totals_match(settings) == (7, Decimal("225506.00"))
        assert vers(settings, "X1") == [(rows_version, 0)]  # its own row-event version
    else:
        assert totals_match(settings) == (6, Decimal("275005.00"))
        assert vers(settings, "X1") == []
    assert saved_position(settings) > xa_start  # resolved: the position moves on


# --- TIMESTAMP(6) change columns written from a -05:00 session, ETL in New York -------------

def test_timestamps_from_another_time_zone_arrive_as_utc_microseconds(settings):
    db = settings.mysql_database
    conn = mysql_admin(db)
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '-05:00'")
        cur.execute("INSERT INTO users (user_id, name, email, updated_at) VALUES "
                    "(60, 'Snap', 's@example.com', '2025-06-01 10:00:00.123456')")
    conn.close()
    code, out = run_stream(settings, TZ="America/New_York")  # the snapshot path
    assert code == 0, out
    mysql_exec(db, "ALTER TABLE merchants ADD COLUMN tags JSON NULL")  # the library's decoder
    conn = mysql_admin(db)
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '-05:00'")
        cur.execute("INSERT INTO users (user_id, name, email, updated_at) VALUES "
                    "(61, 'Live', 'l@example.com', '2025-06-01 10:00:00.654321')")
        cur.execute("UPDATE users SET city = 'Medan' WHERE user_id = 60")
        cur.execute("UPDATE merchants SET city = 'Medan', updated_at = '2025-06-02 00:30:00.5' "
                    "WHERE merchant_id = 2")
    conn.close()
    code, out = run_stream(settings, TZ="America/New_York")  # the binlog path
    assert code == 0, out
    assert_replica_equals_source(settings)
    source = dict(mysql_exec(db, "SELECT user_id, UNIX_TIMESTAMP(updated_at) FROM users "
                                 "WHERE user_id IN (60, 61)"))
    replica = dict(query(settings, "SELECT user_id, updated_at_us FROM analytics_dw.v_cdc_users "
                                   "WHERE user_id IN (60, 61)"))
    assert {k: int(v * 1_000_000) for k, v in source.items()} == replica
    assert replica[61] == 1748790000654321  # 10:00 at -05:00 is 15:00 UTC
    ((merchant,),) = query(settings, "SELECT updated_at_us FROM analytics_dw.v_cdc_merchants "
                                     "WHERE merchant_id = 2")
    assert merchant == 1748842200500000  # 2025-06-02 05:30:00.5 UTC
