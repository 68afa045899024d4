"""The batch path misses nothing and duplicates nothing: updated rows, late commits, the exact
watermark boundary, dimension changes, bad rows, hostile text, and the money reconciliation that
the other tests use as their oracle. Real MariaDB; both ClickHouse engines (`settings`)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa
import pytest

from ewallet_etl.core import transform
from ewallet_etl.pipelines.batch import run_batch
from ewallet_etl.pipelines.reconcile import compare, reconcile
from ewallet_etl.sources import mysql as source_mysql
from tests.helpers import (
    ROOT,
    as_decimal,
    checkpoint_of,
    mysql_admin,
    mysql_exec,
    warehouse_target,
)

pytestmark = pytest.mark.integration

INSERT_TX = ("INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, status, "
             "transaction_time) VALUES (%s, %s, %s, %s, %s, %s)")


def fact(wh, tx: str) -> tuple | None:
    rows = wh.query("SELECT status, amount, amount_category FROM analytics_dw.v_fact_sales "
                    "WHERE transaction_id = {tx:String}", {"tx": tx})
    assert len(rows) <= 1, rows
    return (rows[0][0], as_decimal(rows[0][1]), rows[0][2]) if rows else None


def user_query(wh) -> list[tuple]:
    rows = wh.query((ROOT / "Querying_Total_Transaction_User.sql").read_text().strip().rstrip(";"))
    return [(name, str(day), as_decimal(total)) for name, day, total in rows]


def merchant_query(wh) -> list[tuple]:
    sql = (ROOT / "Querying_Total_Transaction_Merchant.sql").read_text().strip().rstrip(";")
    return [tuple(row) for row in wh.query(sql)]


def source_now(db: str) -> datetime:
    return mysql_exec(db, "SELECT UTC_TIMESTAMP(6)")[0][0]


# --- 1. updated rows ---------------------------------------------------------------------------

def test_changed_transactions_show_their_latest_state_in_facts_and_queries(settings, wh):
    db = settings.mysql_database
    mysql_exec(db, INSERT_TX, ("TX2001", 3, 2, "80000.00", "PENDING", "2025-01-12 10:00:00"))
    run_batch(settings)
    assert fact(wh, "TX2001") == ("PENDING", Decimal("80000.00"), "Medium")
    assert ("Citra Lestari", "2025-01-12", Decimal("80000.00")) not in user_query(wh)

    mysql_exec(db, "UPDATE transactions SET status = 'SUCCESS' WHERE transaction_id = 'TX2001'")
    report = run_batch(settings)
    assert (report.rows_read, report.sales) == (1, 1)
    assert fact(wh, "TX2001") == ("SUCCESS", Decimal("80000.00"), "Medium")
    assert ("Citra Lestari", "2025-01-12", Decimal("80000.00")) in user_query(wh)
    assert ("Tokopedia", "E-commerce", 2) in merchant_query(wh)

    mysql_exec(db, "UPDATE transactions SET amount = 120000.00 WHERE transaction_id = 'TX2001'")
    mysql_exec(db, "UPDATE transactions SET status = 'REFUNDED' WHERE transaction_id = 'TX1003'")
    report = run_batch(settings)
    assert report.rows_read == 2
    assert fact(wh, "TX2001") == ("SUCCESS", Decimal("120000.00"), "High")
    assert fact(wh, "TX1003") == ("REFUNDED", Decimal("150000.00"), "High")
    assert user_query(wh) == [
        ("Andi Pratama", "2025-01-10", Decimal("50000.00")),
        ("Budi Santoso", "2025-01-11", Decimal("65000.00")),
        ("Citra Lestari", "2025-01-12", Decimal("120000.00")),
    ]
    assert merchant_query(wh) == [("Kopi Kenangan", "Food & Beverage", 2),
                                  ("Tokopedia", "E-commerce", 1)]
    assert reconcile(settings)


# --- 2. late commits and the exact boundary ----------------------------------------------------

@pytest.fixture
def late_transaction(source_db):
    """Opens, on a second connection, a transaction that inserts a row and stays open; returns
    (connection, trx_started). Rolled back at teardown if the test did not commit it (an open
    transaction would block dropping the test database)."""
    opened = []

    def open_one(tx: str):
        late = mysql_admin(source_db)
        opened.append(late)
        with late.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute(INSERT_TX, (tx, 1, 2, "70000.00", "SUCCESS", "2025-01-12 09:00:00"))
            deadline = time.monotonic() + 15  # INNODB_TRX is a cache: slow on a loaded machine
            while time.monotonic() < deadline:
                cur.execute("SELECT trx_started FROM information_schema.INNODB_TRX "
                            "WHERE trx_mysql_thread_id = CONNECTION_ID()")
                row = cur.fetchone()
                if row:
                    return late, row[0]
                time.sleep(0.05)
        raise AssertionError("the open transaction never showed in INNODB_TRX")

    yield open_one
    for conn in opened:
        if conn.open:
            conn.rollback()
            conn.close()


def _commit(late) -> None:
    with late.cursor() as cur:
        cur.execute("COMMIT")
    late.close()


def _updated_at(db: str, tx: str) -> datetime:
    return mysql_exec(db, "SELECT updated_at FROM transactions WHERE transaction_id = %s",
                      (tx,))[0][0]


def test_late_commit_is_kept_out_of_the_window_by_the_open_transaction_cap(
        settings, wh, late_transaction):
    db = settings.mysql_database
    first = run_batch(settings)
    # trx_started has whole seconds and the cap keeps 1 s below it: start the open transaction
    # over 2 s after the checkpoint, so that the capped window visibly advances.
    time.sleep(2.1)
    late, started = late_transaction("TXLATE")
    time.sleep(1.2)  # the source clock moves well past the open row's change time
    mysql_exec(db, INSERT_TX, ("TXAFTER", 2, 1, "1000.00", "SUCCESS", "2025-01-12 09:30:00"))
    report = run_batch(settings)
    # The window advanced, but stops below the open transaction's start (whole seconds - 1 s).
    high = report.window.high.replace(tzinfo=None)
    assert first.window.high.replace(tzinfo=None) < high <= started - timedelta(seconds=1)
    assert checkpoint_of(settings) == high
    assert fact(wh, "TXLATE") is None and fact(wh, "TXAFTER") is None  # both wait

    _commit(late)
    assert _updated_at(db, "TXLATE") >= checkpoint_of(settings)
    report = run_batch(settings)
    assert report.rows_read == 2
    assert fact(wh, "TXLATE") == ("SUCCESS", Decimal("70000.00"), "Medium")
    assert fact(wh, "TXAFTER") == ("SUCCESS", Decimal("1000.00"), "Low")
    assert reconcile(settings)


def _no_cap(monkeypatch) -> None:
    """Simulate an ETL user without PROCESS: INNODB_TRX is not readable."""
    monkeypatch.setattr(source_mysql, "oldest_open_transaction", lambda conn: None)


def test_late_commit_is_caught_by_the_overlap_without_the_cap(
        settings, wh, monkeypatch, late_transaction):
    _no_cap(monkeypatch)
    settings = replace(settings, overlap_seconds=60)
    db = settings.mysql_database
    run_batch(settings)
    late, _ = late_transaction("TXLATE")
    time.sleep(0.05)
    run_batch(settings)  # reads past the open row's change time: the checkpoint passes it
    _commit(late)
    assert _updated_at(db, "TXLATE") < checkpoint_of(settings)
    report = run_batch(settings)
    assert report.rows_read - report.rows_reread == 0  # nothing new above the checkpoint...
    assert fact(wh, "TXLATE") == ("SUCCESS", Decimal("70000.00"), "Medium")  # ...but re-read
    run_batch(settings)  # and re-read again: still one row
    assert wh.query("SELECT count() FROM analytics_dw.v_fact_sales "
                    "WHERE transaction_id = 'TXLATE'") == [(1,)]
    assert reconcile(settings)


def test_without_cap_or_overlap_a_late_commit_is_missed_and_reconcile_names_it(
        settings, wh, monkeypatch, caplog, late_transaction):
    """The negative control: why the two protections exist, and what catches the rest."""
    _no_cap(monkeypatch)
    run_batch(settings)
    late, _ = late_transaction("TXLATE")
    time.sleep(0.05)
    run_batch(settings)
    _commit(late)
    run_batch(settings)
    assert fact(wh, "TXLATE") is None  # lost to the watermark
    result = compare(settings)
    assert [(d.day, d.missing) for d in result.mismatches] == [(date(2025, 1, 12), ["TXLATE"])]
    with caplog.at_level(logging.INFO):
        assert reconcile(settings) is False
    assert "2025-01-12" in caplog.text and "'TXLATE'" in caplog.text
    run_batch(settings, full_refresh=True)  # the repair
    assert reconcile(settings)


def test_rows_exactly_at_the_checkpoint_are_loaded_once(settings, wh, monkeypatch):
    db = settings.mysql_database
    boundary = source_now(db) - timedelta(hours=1)
    mysql_exec(db, "UPDATE transactions SET updated_at = %s WHERE transaction_id = 'TX1001'",
               (boundary - timedelta(microseconds=1),))
    mysql_exec(db, "UPDATE transactions SET updated_at = %s WHERE transaction_id = 'TX1003'",
               (boundary,))
    with monkeypatch.context() as patch:  # the source's clock reads exactly `boundary`
        patch.setattr(source_mysql, "db_clock",
                      lambda conn: boundary.replace(tzinfo=timezone.utc))
        first = run_batch(settings)
    assert checkpoint_of(settings) == boundary
    assert (first.rows_read, fact(wh, "TX1003")) == (1, None)  # [low, boundary): open above
    second = run_batch(settings)
    assert (second.rows_read, second.rows_reread) == (3, 0)  # TX1003 at the closed lower bound
    raw = wh.query("SELECT transaction_id, count() FROM analytics_dw.fact_sales "
                   "GROUP BY transaction_id ORDER BY transaction_id")
    assert raw == [("TX1001", 1), ("TX1003", 1), ("TX1004", 1), ("TX1008", 1)]  # no doubles
    assert reconcile(settings)


# --- 3. dimension changes ----------------------------------------------------------------------

def test_dimension_changes_reach_the_dimensions_and_the_queries(settings, wh):
    db = settings.mysql_database
    run_batch(settings)
    mysql_exec(db, "UPDATE users SET name = 'Andi P. Wijaya', city = 'Medan' WHERE user_id = 1")
    mysql_exec(db, "UPDATE merchants SET name = 'Kenangan Coffee', category = 'Coffee' "
                   "WHERE merchant_id = 1")
    report = run_batch(settings)
    assert (report.rows_read, report.dimension_rows) == (0, 2)
    assert wh.query("SELECT name, city FROM analytics_dw.v_dim_users WHERE user_id = 1") == [
        ("Andi P. Wijaya", "Medan")]
    assert wh.query("SELECT count() FROM analytics_dw.v_dim_users") == [(3,)]
    assert ("Andi P. Wijaya", "2025-01-10", Decimal("50000.00")) in user_query(wh)
    assert all(name != "Andi Pratama" for name, _, _ in user_query(wh))
    assert merchant_query(wh) == [("Kenangan Coffee", "Coffee", 2), ("Tokopedia", "E-commerce", 1)]
    orphans = wh.query(
        "SELECT count() FROM analytics_dw.v_fact_sales WHERE "
        "user_key NOT IN (SELECT user_key FROM analytics_dw.v_dim_users) OR "
        "merchant_key NOT IN (SELECT merchant_key FROM analytics_dw.v_dim_merchants)")
    assert orphans == [(0,)]


# --- 6. bad source rows ------------------------------------------------------------------------

NASTY_ID = "TX'); DROP TABLE users; --\\%☃"
BAD_ROWS = {
    # transaction_id: (user_id, merchant_id, amount, status, transaction_time, expected reason)
    "TXB-NULLAMT": (1, 1, None, "SUCCESS", "2025-01-13 10:00:00", "amount is NULL"),
    "TXB-NEG": (1, 1, "-5.00", "SUCCESS", "2025-01-13 10:00:00", "amount is negative"),
    "TXB-HUGE": (1, 1, "123456789012345678.99", "SUCCESS", "2025-01-13 10:00:00",
                 "amount exceeds Decimal(18, 2)"),
    "TXB-STATUS": (1, 1, "10.00", "CHARGEBACK", "2025-01-13 10:00:00", "unknown status"),
    NASTY_ID: (1, 1, "10.00", "W'EIRD", "2025-01-13 10:00:00", "unknown status"),
    "TXB-1900": (1, 1, "10.00", "SUCCESS", "1900-01-01 00:00:00",
                 "transaction_time before 2000-01-01"),
    "TXB-2999": (1, 1, "10.00", "SUCCESS", "2999-01-01 00:00:00",
                 "transaction_time more than a day after updated_at"),
    "TXB-NULLTIME": (1, 1, "10.00", "SUCCESS", None, "transaction_time is NULL"),
}
# Not bad: a user or merchant without a row (yet) gets an inferred member, the fact loads.
ORPHAN_ROWS = {
    "TXB-NOUSER": (999, 1, "10.00", "SUCCESS", "2025-01-13 10:00:00"),
    "TXB-NOMERCH": (1, 999, "10.00", "SUCCESS", "2025-01-13 10:00:00"),
}


def insert_bad_rows(db: str) -> None:
    """Loosen this test's own source (no FK checks, nullable columns, no status check) and
    insert one row per rule, plus one good row."""
    conn = mysql_admin(db)
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE transactions DROP CONSTRAINT chk_transactions_status")
        cur.execute("ALTER TABLE transactions MODIFY amount DECIMAL(20,2) NULL, "
                    "MODIFY transaction_time DATETIME NULL")
        cur.execute("SET FOREIGN_KEY_CHECKS = 0")
        for tx, (user, merchant, amount, status, when, _) in BAD_ROWS.items():
            cur.execute(INSERT_TX, (tx, user, merchant, amount, status, when))
        for tx, row in ORPHAN_ROWS.items():
            cur.execute(INSERT_TX, (tx, *row))
        cur.execute(INSERT_TX, ("TXB-GOOD", 3, 3, "42.00", "SUCCESS", "2025-01-13 10:00:00"))
    conn.close()


def test_bad_rows_are_quarantined_with_reason_and_raw_row_and_counted(settings, wh):
    insert_bad_rows(settings.mysql_database)
    report = run_batch(settings)
    assert (report.status, report.rows_read, report.rows_loaded) == ("completed_with_rejects",
                                                                      15, 7)
    assert report.rows_rejected == len(BAD_ROWS) and report.inferred == 2
    assert sum(report.reject_reasons.values()) == len(BAD_ROWS)
    rows = wh.query("SELECT record_key, reason, raw FROM analytics_dw.etl_quarantine FINAL")
    assert {key: reason for key, reason, _ in rows} == {
        tx: spec[-1] for tx, spec in BAD_ROWS.items()}
    raws = {key: json.loads(raw) for key, _, raw in rows}
    assert raws[NASTY_ID]["status"] == "W'EIRD" and raws["TXB-NULLAMT"]["amount"] is None
    assert raws["TXB-HUGE"]["amount"].startswith("123456789012345678.99")
    assert fact(wh, "TXB-GOOD") == ("SUCCESS", Decimal("42.00"), "Low")
    assert all(fact(wh, tx) is None for tx in BAD_ROWS)
    assert fact(wh, "TXB-NOUSER") == fact(wh, "TXB-NOMERCH") == ("SUCCESS", Decimal("10.00"),
                                                                 "Low")
    assert wh.query("SELECT name FROM analytics_dw.v_dim_users WHERE user_id = 999") == [("",)]
    audit = wh.query("SELECT mode, window_from, window_to, rows_read, rows_loaded, "
                     "rows_rejected, status, seconds > 0 "
                     "FROM analytics_dw.etl_runs WHERE run_id = {id:String}",
                     {"id": report.run_id})
    assert audit == [("full", "1970-01-01T00:00:00+00:00", report.window.high.isoformat(),
                      15, 7, len(BAD_ROWS), "completed_with_rejects", 1)]

    run_batch(settings, full_refresh=True)  # reads every bad row again
    assert wh.query("SELECT count() FROM analytics_dw.etl_quarantine FINAL") == [(len(BAD_ROWS),)]
    result = compare(settings)  # quarantined rows are absent on purpose, not a mismatch
    assert result.ok and sorted(result.quarantined) == sorted(BAD_ROWS)


# --- 7. hostile text ---------------------------------------------------------------------------

NASTY_USER = "O'Brien \"Bobby\" \\ 100% ☃ '); DROP TABLE users; --"
NASTY_MERCHANT = "Toko `x` \\' OR 1=1 -- 😀 %(name)s %s"


def test_quotes_backslashes_percent_and_unicode_round_trip_literally(settings, wh):
    db = settings.mysql_database
    mysql_exec(db, "INSERT INTO users (user_id, name, email, city) VALUES (4, %s, %s, %s)",
               (NASTY_USER, "o'brien@example.com", "Kota 'Lama' \\ ☃"))
    mysql_exec(db, "INSERT INTO merchants (merchant_id, name, category, city) "
                   "VALUES (4, %s, %s, 'x')", (NASTY_MERCHANT, "Cat\\egory %"))
    mysql_exec(db, INSERT_TX, (NASTY_ID, 4, 4, "123.45", "SUCCESS", "2025-01-13 00:00:00"))
    run_batch(settings)
    assert fact(wh, NASTY_ID) == ("SUCCESS", Decimal("123.45"), "Low")
    assert wh.query("SELECT name, email, city FROM analytics_dw.v_dim_users WHERE user_id = 4") \
        == [(NASTY_USER, "o'brien@example.com", "Kota 'Lama' \\ ☃")]
    assert (NASTY_USER, "2025-01-13", Decimal("123.45")) in user_query(wh)
    assert (NASTY_MERCHANT, "Cat\\egory %", 1) in merchant_query(wh)
    assert mysql_exec(db, "SELECT count(*) FROM users") == [(4,)]  # still there
    assert reconcile(settings)


@pytest.mark.parametrize("value, expected", [
    ("plain", "plain"),
    ("it's", "it's"),
    ("back\\slash\\", "back\\slash\\"),
    ("\\'; DROP TABLE users; --", "\\'; DROP TABLE users; --"),
    ("100% %s %(low)s", "100% %s %(low)s"),
    ("ünï☃ 😀 \"q\"", "ünï☃ 😀 \"q\""),
    ("", ""),
    (datetime(2025, 1, 2, 3, 4, 5, 678901), datetime(2025, 1, 2, 3, 4, 5, 678901)),
    (datetime(2025, 1, 2, 3, 4, 5), datetime(2025, 1, 2, 3, 4, 5)),
    (datetime(2025, 1, 2, 10, 4, 5, 1, tzinfo=timezone(timedelta(hours=7))),
     datetime(2025, 1, 2, 3, 4, 5, 1)),  # aware -> naive UTC, microseconds kept
    (Decimal("12345678.91"), Decimal("12345678.91")),
    (42, 42),
])
def test_bind_sends_values_literally_under_any_sql_mode(source_db, value, expected):
    template = ("SELECT CAST(%(v)s AS DATETIME(6)) AS v" if isinstance(expected, datetime)
                else "SELECT %(v)s AS v")
    sql = source_mysql.bind(template, {"v": value})
    conn = mysql_admin(source_db)
    for mode in ("", "NO_BACKSLASH_ESCAPES,ANSI_QUOTES"):
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = %s", (mode,))
            cur.execute(sql)  # the bound text alone, no driver parameters
            (got,) = cur.fetchone()
        got = got.decode() if isinstance(got, bytes) else got
        assert got == expected and type(got) is type(expected), mode
    conn.close()
    target = warehouse_target("clickhouse-server", "unused", None)
    settings = replace(_source_settings(source_db), warehouse=target)
    (table,) = list(source_mysql.stream(settings, template, {"v": value}, None))
    got = table.column("v")[0].as_py()
    if isinstance(expected, datetime):
        got = got.replace(tzinfo=None)
    assert got == expected


def _source_settings(db: str):
    from tests.helpers import settings_for
    return settings_for(db, warehouse_target("clickhouse-server", "unused", None))


def test_bind_refuses_types_it_cannot_render_exactly():
    with pytest.raises(TypeError):
        source_mysql.bind("SELECT %(v)s", {"v": object()})


# --- 8. reconciliation -------------------------------------------------------------------------

def _plant(wh, tx: str, user: int, merchant: int, amount: str, status: str, when: datetime,
           version: datetime) -> None:
    """Write one fact row straight into the warehouse, as the pipeline would shape it."""
    source_row = pa.table({
        "transaction_id": [tx], "user_id": pa.array([user], pa.uint32()),
        "merchant_id": pa.array([merchant], pa.uint32()),
        "amount": pa.array([Decimal(amount)], pa.decimal128(38, 10)), "status": [status],
        "transaction_time": pa.array([when], pa.timestamp("us")),
        "updated_at": pa.array([version], pa.timestamp("us")),
        "user_found": [1], "merchant_found": [1],
    })
    facts, rejects = transform.transform_transactions(source_row)
    assert rejects.num_rows == 0
    wh.insert("fact_sales", facts)


def test_reconcile_names_the_days_and_ids_that_differ(settings, wh, caplog):
    db = settings.mysql_database
    run_batch(settings)
    assert reconcile(settings)
    later = source_now(db) + timedelta(days=1)
    # A newer version of TX1003 with one cent more; a fact the source never had; a hard delete.
    _plant(wh, "TX1003", 2, 2, "150000.01", "SUCCESS", datetime(2025, 1, 10, 12, 30), later)
    _plant(wh, "TXGHOST", 1, 1, "5.00", "FAILED", datetime(2025, 1, 11, 1, 0), later)
    mysql_exec(db, "DELETE FROM transactions WHERE transaction_id = 'TX1001'")
    result = compare(settings)
    by_day = {d.day: (d.missing, d.extra, d.changed) for d in result.mismatches}
    assert by_day == {date(2025, 1, 10): ([], ["TX1001"], ["TX1003"]),
                      date(2025, 1, 11): ([], ["TXGHOST"], [])}
    with caplog.at_level(logging.INFO):
        assert reconcile(settings) is False
    for needle in ("2025-01-10", "2025-01-11", "'TX1001'", "'TX1003'", "'TXGHOST'"):
        assert needle in caplog.text


def test_hard_deletes_are_caught_by_reconcile_and_swept_by_full_refresh_moved_days_replace(
        settings, wh):
    """A DELETE never bumps updated_at: incremental runs cannot see it; reconcile names it and
    --full-refresh tombstones it. A changed day is an ordinary change (fact_sales is keyed by
    the id alone): the incremental run replaces the old day's row."""
    db = settings.mysql_database
    run_batch(settings)
    mysql_exec(db, "UPDATE transactions SET transaction_time = '2025-01-12 09:45:00' "
                   "WHERE transaction_id = 'TX1008'")
    mysql_exec(db, "DELETE FROM transactions WHERE transaction_id = 'TX1001'")
    run_batch(settings)
    result = compare(settings)
    assert [(d.day, d.extra) for d in result.mismatches] == [(date(2025, 1, 10), ["TX1001"])]
    report = run_batch(settings, full_refresh=True)
    assert report.rows_deleted == 1 and "deleted=1" in report.summary()
    assert reconcile(settings)
    assert wh.query("SELECT transaction_id, toString(transaction_date) "
                    "FROM analytics_dw.v_fact_sales ORDER BY transaction_id") == [
        ("TX1003", "2025-01-10"), ("TX1004", "2025-01-10"), ("TX1008", "2025-01-12")]
    assert run_batch(settings, full_refresh=True).rows_deleted == 0  # idempotent


def test_full_refresh_sweeps_what_it_did_not_rewrite_after_asking_the_source(settings, wh):
    """The sweep checks only the facts the refresh did not rewrite (their `_loaded_us` is not
    the run's) and asks the source about their ids: a fact a stream wrote (stamp 0) whose
    transaction is gone is tombstoned; one changed after the refresh's window (not read, still
    in the source) and one whose id differs only in case stay."""
    db = settings.mysql_database
    run_batch(settings)
    stamps = dict(wh.query("SELECT transaction_id, _loaded_us FROM analytics_dw.fact_sales"))
    assert set(stamps.values()) != {0}  # the batch stamps its facts
    # Written by a stream (no stamp), then gone from the source; 'tx1003' is not TX1003.
    _plant(wh, "TXSTREAM", 1, 1, "7.00", "SUCCESS", datetime(2025, 1, 11, 1, 0),
           datetime(2025, 1, 11, 1, 0))
    _plant(wh, "tx1003", 1, 1, "8.00", "SUCCESS", datetime(2025, 1, 11, 2, 0),
           datetime(2025, 1, 11, 2, 0))
    # Changed after the window's end: the refresh does not read it; the source still has it.
    mysql_exec(db, "UPDATE transactions SET updated_at = NOW() + INTERVAL 1 DAY "
                   "WHERE transaction_id = 'TX1004'")
    report = run_batch(settings, full_refresh=True)
    assert report.rows_deleted == 2
    live = [tx for (tx,) in wh.query(
        "SELECT transaction_id FROM analytics_dw.v_fact_sales ORDER BY transaction_id")]
    assert "TX1004" in live and "TX1003" in live
    assert "TXSTREAM" not in live and "tx1003" not in live
    assert run_batch(settings, full_refresh=True).rows_deleted == 0
