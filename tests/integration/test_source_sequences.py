"""Issue 12, "Not a cent lost, doubled or stale": source-side sequences that an updated_at
watermark alone gets wrong, and what the batch load must do about each of them.

1. a transaction whose day moves (also across a month, and back) keeps exactly one fact;
2. the writer session's time zone does not matter, and a DATETIME change column is refused;
3. a fact whose user or merchant is not there yet loads against an inferred member, which the
   real row replaces when it arrives;
4. a refused new version retracts the old one (and a user deleted in the source does not
   block its transactions' changes);
5. impossible dates ('0000-00-00', '2025-02-30') are quarantined, never crash a run;
7. the checkpoint belongs to the warehouse it was earned in (a second or restored warehouse
   catches up), and the write-up's reset still makes a full load;
R. the reconciliation names the id whenever the warehouse is wrong, and a quarantine row only
   excuses a difference when its reason still holds for the source row.

Every sequence ends with `compare(settings).ok` and `assert_warehouse_equals_source`, an oracle
of its own: the source rows that are valid (rules written out below, not imported) against
v_fact_sales, per id, (status, amount, transaction_date). Real MariaDB; both ClickHouse
engines (`settings`).
"""

from __future__ import annotations

import json
from dataclasses import fields, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pytest

from ewallet_etl.core import transform
from ewallet_etl.pipelines.batch import run_batch
from ewallet_etl.pipelines.reconcile import compare
from ewallet_etl.warehouse import WAREHOUSE_DDL, ensure_schema
from tests.helpers import (
    ROOT,
    as_decimal,
    checkpoint_of,
    fact_state,
    mysql_admin,
    mysql_exec,
    open_warehouse,
    run_cli,
    unique,
    warehouse_target,
)

pytestmark = pytest.mark.integration

INSERT_TX = ("INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, status, "
             "transaction_time) VALUES (%s, %s, %s, %s, %s, %s)")
UTC = "SET time_zone = '+00:00'"
NO_FK = "SET foreign_key_checks = 0"

# The seed's user query (Querying_Total_Transaction_User.sql) after a first load.
SEED_USER_QUERY = [
    ("Andi Pratama", "2025-01-10", Decimal("50000.00")),
    ("Budi Santoso", "2025-01-10", Decimal("150000.00")),
    ("Budi Santoso", "2025-01-11", Decimal("65000.00")),
]
SEED_MERCHANT_QUERY = [("Kopi Kenangan", "Food & Beverage", 2), ("Tokopedia", "E-commerce", 1)]


# --- helpers -----------------------------------------------------------------------------------

def fact(wh, tx: str) -> tuple | None:
    rows = wh.query("SELECT status, amount, amount_category FROM analytics_dw.v_fact_sales "
                    "WHERE transaction_id = {tx:String}", {"tx": tx})
    assert len(rows) <= 1, rows
    return (rows[0][0], as_decimal(rows[0][1]), rows[0][2]) if rows else None


def fact_days(wh, tx: str) -> list[tuple]:
    """Every current row of one transaction: (transaction_date, status, amount)."""
    rows = wh.query("SELECT toString(transaction_date), status, amount "
                    "FROM analytics_dw.v_fact_sales WHERE transaction_id = {tx:String} "
                    "ORDER BY transaction_date", {"tx": tx})
    return [(day, status, as_decimal(amount)) for day, status, amount in rows]


def user_query(wh) -> list[tuple]:
    rows = wh.query((ROOT / "Querying_Total_Transaction_User.sql").read_text().strip().rstrip(";"))
    return [(name, str(day), as_decimal(total)) for name, day, total in rows]


def merchant_query(wh) -> list[tuple]:
    sql = (ROOT / "Querying_Total_Transaction_Merchant.sql").read_text().strip().rstrip(";")
    return [tuple(row) for row in wh.query(sql)]


def quarantine(wh) -> list[tuple]:
    return wh.query("SELECT record_key, reason FROM analytics_dw.etl_quarantine FINAL "
                    "ORDER BY record_key, _version")


def source_now(db: str) -> datetime:
    return mysql_exec(db, "SELECT UTC_TIMESTAMP(6)")[0][0]


def micros(moment: datetime) -> int:
    """A naive UTC source time as the pipeline's `_version` (microseconds since the epoch)."""
    return (moment - datetime(1970, 1, 1)) // timedelta(microseconds=1)


def source_version(db: str, tx: str) -> int:
    ((updated_at,),) = mysql_exec(db, "SELECT updated_at FROM transactions "
                                      "WHERE transaction_id = %s", (tx,))
    return micros(updated_at)


def write_as(db: str, session: list[str], sql: str, params: Any = None) -> None:
    """Run one statement on a writer connection that first ran `session` (SET time_zone,
    SET sql_mode, SET foreign_key_checks: they override mysql_admin's UTC init_command)."""
    conn = mysql_admin(db)
    try:
        with conn.cursor() as cur:
            for statement in session:
                cur.execute(statement)
            cur.execute(sql, params)
    finally:
        conn.close()


# What the pipeline must load, written out here as the oracle: a row is valid when it has an
# id, a non-negative amount with at most 2 decimals that fits Decimal(18, 2), a known status
# and a real transaction_time from 2000-01-01 to a day past the source's clock. A missing user
# or merchant no longer refuses a row (inferred members).
STATUSES = {"SUCCESS", "FAILED", "PENDING", "REFUNDED"}
LARGEST = Decimal("9999999999999999.99")


def _valid(tx: str, status: str, amount: Any, when: Any, now: datetime) -> bool:
    return (bool(tx) and amount is not None and Decimal(0) <= amount <= LARGEST
            and amount == amount.quantize(Decimal("0.01")) and status in STATUSES
            and isinstance(when, datetime)  # PyMySQL hands impossible dates back as text
            and datetime(2000, 1, 1) <= when <= now + timedelta(days=1))


def valid_source_rows(db: str) -> dict[str, tuple[str, Decimal, str]]:
    now = source_now(db)
    rows = mysql_exec(db, "SELECT transaction_id, status, amount, transaction_time "
                          "FROM transactions")
    return {tx: (status, as_decimal(amount), when.date().isoformat())
            for tx, status, amount, when in rows if _valid(tx, status, amount, when, now)}


def assert_warehouse_equals_source(settings, wh) -> None:
    """Per transaction id, (status, amount, transaction_date) of the valid source rows equal
    v_fact_sales' rows exactly: nothing missing, nothing extra, no id twice."""
    rows = wh.query("SELECT transaction_id, status, amount, toString(transaction_date) "
                    "FROM analytics_dw.v_fact_sales")
    warehouse = {tx: (status, as_decimal(amount), day) for tx, status, amount, day in rows}
    assert len(warehouse) == len(rows), sorted(rows)
    assert warehouse == valid_source_rows(settings.mysql_database)


def assert_in_sync(settings, wh, quarantined: tuple[str, ...] = ()) -> None:
    """The end of every sequence: reconcile agrees (explaining exactly `quarantined`) and the
    warehouse equals the source."""
    result = compare(settings)
    assert result.ok, [(d.day, d.missing, d.extra, d.changed) for d in result.mismatches]
    assert sorted(result.quarantined) == sorted(quarantined)
    assert_warehouse_equals_source(settings, wh)


def named_ids(diff) -> list[str]:
    """The ids a day's diff names as wrong, whatever list it files them under (missing, extra,
    changed, or one the fix adds), except the ones it excuses as quarantined."""
    return sorted(tx for f in fields(diff) if f.name != "quarantined"
                  and isinstance(getattr(diff, f.name), list) for tx in getattr(diff, f.name))


def plant_fact(wh, tx: str, user: int, merchant: int, amount: str, status: str,
               when: datetime, version: datetime) -> None:
    """Write one fact row straight into fact_sales, shaped as the pipeline shapes it."""
    money = Decimal(amount)
    wh.insert("fact_sales", pa.table({
        "transaction_id": pa.array([tx], pa.string()),
        "user_key": transform.surrogate_keys(np.array([user]), "user"),
        "merchant_key": transform.surrogate_keys(np.array([merchant]), "merchant"),
        "amount": pa.array([money], transform.WAREHOUSE_AMOUNT),
        "amount_category": pa.array([transform.amount_category(money)], pa.string()),
        "status": pa.array([status], pa.string()),
        "transaction_time": pa.array([when.replace(tzinfo=timezone.utc)], transform.UTC_SECONDS),
        "transaction_date": pa.array([when.date()], pa.date32()),
        "updated_at": pa.array([version.replace(tzinfo=timezone.utc, microsecond=0)],
                               transform.UTC_SECONDS),
        "_version": pa.array([micros(version)], pa.uint64()),
        "_deleted": pa.array([0], pa.uint8()),
    }))


def plant_quarantine(wh, tx: str, version: int, reason: str) -> None:
    """Write one etl_quarantine row for a source transaction, as a run would."""
    at = datetime.now(timezone.utc).replace(microsecond=0)
    wh.insert("etl_quarantine", pa.table({
        "source": pa.array(["transactions"], pa.string()),
        "record_key": pa.array([tx], pa.string()),
        "_version": pa.array([version], pa.uint64()),
        "reason": pa.array([reason], pa.string()),
        "raw": pa.array([json.dumps({"transaction_id": tx})], pa.string()),
        "run_id": pa.array(["planted-by-test"], pa.string()),
        "rejected_at": pa.array([at], transform.UTC_SECONDS),
    }))


@pytest.fixture
def warehouse_b(settings, engine, chdb_path) -> Iterator[tuple[Any, Any]]:
    """A second, empty warehouse (B) fed from the same source database and pipeline name."""
    target = warehouse_target(engine, unique("ewt_dw"), chdb_path)
    wh_b = open_warehouse(target)
    ensure_schema(wh_b, WAREHOUSE_DDL)
    yield replace(settings, warehouse=target), wh_b
    wh_b.execute("DROP DATABASE IF EXISTS analytics_dw" + (" SYNC" if engine == "chdb" else ""))
    wh_b.close()


# --- 1. moved days -----------------------------------------------------------------------------

def test_a_transaction_whose_day_moves_keeps_exactly_one_fact_on_its_new_day(settings, wh):
    db = settings.mysql_database
    run_batch(settings)
    assert fact_days(wh, "TX1001") == [("2025-01-10", "SUCCESS", Decimal("50000.00"))]
    mysql_exec(db, "UPDATE transactions SET transaction_time = '2025-01-12 09:00:00' "
                   "WHERE transaction_id = 'TX1001'")
    report = run_batch(settings)
    assert (report.status, report.rows_read) == ("success", 1)
    assert fact_days(wh, "TX1001") == [("2025-01-12", "SUCCESS", Decimal("50000.00"))]
    assert user_query(wh) == [
        ("Budi Santoso", "2025-01-10", Decimal("150000.00")),
        ("Budi Santoso", "2025-01-11", Decimal("65000.00")),
        ("Andi Pratama", "2025-01-12", Decimal("50000.00")),
    ]
    assert_in_sync(settings, wh)


def test_a_day_moved_across_a_month_boundary_and_back_keeps_one_fact(settings, wh):
    db = settings.mysql_database
    run_batch(settings)
    mysql_exec(db, "UPDATE transactions SET transaction_time = '2025-02-03 10:00:00' "
                   "WHERE transaction_id = 'TX1001'")
    assert run_batch(settings).status == "success"
    assert fact_days(wh, "TX1001") == [("2025-02-03", "SUCCESS", Decimal("50000.00"))]
    assert user_query(wh) == [
        ("Budi Santoso", "2025-01-10", Decimal("150000.00")),
        ("Budi Santoso", "2025-01-11", Decimal("65000.00")),
        ("Andi Pratama", "2025-02-03", Decimal("50000.00")),
    ]
    assert_in_sync(settings, wh)

    mysql_exec(db, "UPDATE transactions SET transaction_time = '2025-01-10 08:15:00' "
                   "WHERE transaction_id = 'TX1001'")
    assert run_batch(settings).status == "success"
    assert fact_days(wh, "TX1001") == [("2025-01-10", "SUCCESS", Decimal("50000.00"))]
    assert user_query(wh) == SEED_USER_QUERY
    assert wh.query("SELECT count() FROM analytics_dw.v_fact_sales") == [(4,)]
    assert_in_sync(settings, wh)


# --- 2. time zones -----------------------------------------------------------------------------

def test_rows_written_from_sessions_in_other_time_zones_are_loaded(settings, wh):
    db = settings.mysql_database
    run_batch(settings)
    write_as(db, ["SET time_zone = '-05:00'"], INSERT_TX,
             ("TX3001", 3, 2, "20000.00", "SUCCESS", "2025-01-13 10:00:00"))
    write_as(db, ["SET time_zone = '+07:00'"], INSERT_TX,
             ("TX3002", 1, 3, "120000.00", "SUCCESS", "2025-01-13 11:00:00"))
    report = run_batch(settings)
    assert (report.status, report.rows_read, report.sales) == ("success", 2, 2)
    assert fact_days(wh, "TX3001") == [("2025-01-13", "SUCCESS", Decimal("20000.00"))]
    assert fact_days(wh, "TX3002") == [("2025-01-13", "SUCCESS", Decimal("120000.00"))]
    assert (fact(wh, "TX3001"), fact(wh, "TX3002")) == (
        ("SUCCESS", Decimal("20000.00"), "Low"), ("SUCCESS", Decimal("120000.00"), "High"))
    assert user_query(wh) == SEED_USER_QUERY + [
        ("Andi Pratama", "2025-01-13", Decimal("120000.00")),
        ("Citra Lestari", "2025-01-13", Decimal("20000.00")),
    ]
    assert_in_sync(settings, wh)


def test_a_refund_written_from_a_session_behind_utc_wins_over_the_loaded_sale(settings, wh):
    db = settings.mysql_database
    write_as(db, [UTC], INSERT_TX, ("TX3003", 3, 3, "30000.00", "SUCCESS", "2025-01-13 10:00:00"))
    run_batch(settings)
    assert fact(wh, "TX3003") == ("SUCCESS", Decimal("30000.00"), "Low")
    assert user_query(wh) == SEED_USER_QUERY + [
        ("Citra Lestari", "2025-01-13", Decimal("30000.00"))]

    write_as(db, ["SET time_zone = '-05:00'"],
             "UPDATE transactions SET status = 'REFUNDED' WHERE transaction_id = 'TX3003'")
    for full_refresh in (False, True):
        report = run_batch(settings, full_refresh=full_refresh)
        assert report.status == "success"
        assert fact(wh, "TX3003") == ("REFUNDED", Decimal("30000.00"), "Low"), full_refresh
        assert user_query(wh) == SEED_USER_QUERY, full_refresh
        assert merchant_query(wh) == SEED_MERCHANT_QUERY
        assert_in_sync(settings, wh)


def test_a_datetime_change_column_is_refused_before_anything_is_loaded(settings, wh):
    db = settings.mysql_database
    run_batch(settings)
    before = (checkpoint_of(settings), fact_state(wh))
    mysql_exec(db, "ALTER TABLE transactions MODIFY updated_at DATETIME(6) NOT NULL "
                   "DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)")
    mysql_exec(db, INSERT_TX, ("TX3004", 1, 1, "15000.00", "SUCCESS", "2025-01-13 12:00:00"))
    proc = run_cli(settings)  # `python etl_pipeline.py` in a process of its own (tests.helpers)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "transactions.updated_at" in proc.stderr and "TIMESTAMP" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert (checkpoint_of(settings), fact_state(wh)) == before
    assert fact(wh, "TX3004") is None


# --- 3. late dimensions: inferred members ------------------------------------------------------

def test_a_fact_whose_user_arrives_later_loads_against_an_inferred_member(settings, wh):
    db = settings.mysql_database
    run_batch(settings)
    write_as(db, [NO_FK], INSERT_TX,
             ("TX4001", 99, 1, "70000.00", "SUCCESS", "2025-01-13 10:00:00"))
    report = run_batch(settings)
    assert (report.status, report.rows_rejected, report.inferred) == ("success", 0, 1)
    assert (report.rows_read, report.rows_loaded, report.sales) == (1, 1, 1)
    assert fact(wh, "TX4001") == ("SUCCESS", Decimal("70000.00"), "Medium")
    assert wh.query("SELECT name FROM analytics_dw.v_dim_users WHERE user_id = 99") == [("",)]
    assert user_query(wh) == SEED_USER_QUERY + [("", "2025-01-13", Decimal("70000.00"))]
    assert quarantine(wh) == []
    assert_in_sync(settings, wh)

    mysql_exec(db, "INSERT INTO users (user_id, name, email, city) "
                   "VALUES (99, 'Dewi Anggraini', 'dewi@example.com', 'Medan')")
    report = run_batch(settings)
    assert (report.status, report.inferred) == ("success", 0)
    assert wh.query("SELECT name, email, city FROM analytics_dw.v_dim_users "
                    "WHERE user_id = 99") == [("Dewi Anggraini", "dewi@example.com", "Medan")]
    assert wh.query("SELECT count() FROM analytics_dw.v_dim_users") == [(4,)]
    assert user_query(wh) == SEED_USER_QUERY + [
        ("Dewi Anggraini", "2025-01-13", Decimal("70000.00"))]
    assert_in_sync(settings, wh)


def test_a_fact_whose_merchant_arrives_later_loads_against_an_inferred_member(settings, wh):
    db = settings.mysql_database
    run_batch(settings)
    write_as(db, [NO_FK], INSERT_TX,
             ("TX4002", 1, 98, "80000.00", "SUCCESS", "2025-01-13 11:00:00"))
    report = run_batch(settings)
    assert (report.status, report.rows_rejected, report.inferred) == ("success", 0, 1)
    assert fact(wh, "TX4002") == ("SUCCESS", Decimal("80000.00"), "Medium")
    assert wh.query("SELECT name FROM analytics_dw.v_dim_merchants "
                    "WHERE merchant_id = 98") == [("",)]
    # The inferred member's category is not specified: only its name and count are checked.
    assert [(name, n) for name, _, n in merchant_query(wh)] == [
        ("Kopi Kenangan", 2), ("", 1), ("Tokopedia", 1)]
    assert user_query(wh) == SEED_USER_QUERY + [
        ("Andi Pratama", "2025-01-13", Decimal("80000.00"))]
    assert quarantine(wh) == []
    assert_in_sync(settings, wh)

    mysql_exec(db, "INSERT INTO merchants (merchant_id, name, category, city) "
                   "VALUES (98, 'Warung Sate', 'Food & Beverage', 'Medan')")
    report = run_batch(settings)
    assert (report.status, report.inferred) == ("success", 0)
    assert wh.query("SELECT name, category, city FROM analytics_dw.v_dim_merchants "
                    "WHERE merchant_id = 98") == [("Warung Sate", "Food & Beverage", "Medan")]
    assert wh.query("SELECT count() FROM analytics_dw.v_dim_merchants") == [(4,)]
    assert merchant_query(wh) == SEED_MERCHANT_QUERY + [("Warung Sate", "Food & Beverage", 1)]
    assert_in_sync(settings, wh)


# --- 4. refused versions -----------------------------------------------------------------------

def test_a_refused_new_version_retracts_the_loaded_one_until_it_is_fixed(settings, wh):
    db = settings.mysql_database
    run_batch(settings)
    assert fact(wh, "TX1001") == ("SUCCESS", Decimal("50000.00"), "Medium")
    mysql_exec(db, "UPDATE transactions SET amount = -5.00 WHERE transaction_id = 'TX1001'")
    report = run_batch(settings)
    assert (report.status, report.rows_read, report.rows_rejected) == (
        "completed_with_rejects", 1, 1)
    assert quarantine(wh) == [("TX1001", "amount is negative")]
    assert fact(wh, "TX1001") is None
    assert user_query(wh) == SEED_USER_QUERY[1:]  # Andi's 2025-01-10 is gone
    assert_in_sync(settings, wh, quarantined=("TX1001",))

    mysql_exec(db, "UPDATE transactions SET amount = 60000.00 WHERE transaction_id = 'TX1001'")
    report = run_batch(settings)
    assert (report.status, report.rows_read, report.rows_rejected, report.sales) == (
        "success", 1, 0, 1)
    assert fact(wh, "TX1001") == ("SUCCESS", Decimal("60000.00"), "Medium")
    assert user_query(wh) == [("Andi Pratama", "2025-01-10", Decimal("60000.00"))] \
        + SEED_USER_QUERY[1:]
    assert_in_sync(settings, wh)


def test_a_change_to_a_transaction_of_a_user_deleted_in_the_source_is_loaded(settings, wh):
    db = settings.mysql_database
    run_batch(settings)
    write_as(db, [NO_FK], "DELETE FROM users WHERE user_id = 1")
    mysql_exec(db, "UPDATE transactions SET amount = 55000 WHERE transaction_id = 'TX1001'")
    proc = run_cli(settings)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert fact(wh, "TX1001") == ("SUCCESS", Decimal("55000.00"), "Medium")
    assert wh.query("SELECT name FROM analytics_dw.v_dim_users WHERE user_id = 1") == [
        ("Andi Pratama",)]  # facts keep resolving to the user's dimension row
    assert user_query(wh) == [("Andi Pratama", "2025-01-10", Decimal("55000.00"))] \
        + SEED_USER_QUERY[1:]
    assert quarantine(wh) == []
    assert_in_sync(settings, wh)


# --- 5. impossible dates -----------------------------------------------------------------------

def insert_impossible_dates(db: str) -> None:
    write_as(db, ["SET sql_mode = ''"], INSERT_TX,
             ("TX5001", 1, 2, "11000.00", "SUCCESS", "0000-00-00 00:00:00"))
    write_as(db, ["SET sql_mode = 'ALLOW_INVALID_DATES'"], INSERT_TX,
             ("TX5002", 2, 2, "12000.00", "SUCCESS", "2025-02-30 10:00:00"))


def test_impossible_dates_are_quarantined_once_and_load_when_fixed(settings, wh):
    db = settings.mysql_database
    run_batch(settings)
    insert_impossible_dates(db)
    mysql_exec(db, INSERT_TX, ("TX5003", 3, 1, "13000.00", "SUCCESS", "2025-01-14 09:00:00"))
    report = run_batch(settings)
    assert (report.status, report.rows_read, report.rows_loaded, report.rows_rejected) == (
        "completed_with_rejects", 3, 1, 2)
    reasons = dict(quarantine(wh))
    assert sorted(reasons) == ["TX5001", "TX5002"]
    assert all(r.startswith("transaction_time is not a valid date") for r in reasons.values())
    assert fact(wh, "TX5003") == ("SUCCESS", Decimal("13000.00"), "Low")
    assert (fact(wh, "TX5001"), fact(wh, "TX5002")) == (None, None)
    assert user_query(wh) == SEED_USER_QUERY + [
        ("Citra Lestari", "2025-01-14", Decimal("13000.00"))]
    assert_in_sync(settings, wh, quarantined=("TX5001", "TX5002"))

    report = run_batch(settings, full_refresh=True)  # reads both bad rows again
    assert (report.status, report.rows_rejected) == ("completed_with_rejects", 2)
    assert wh.query("SELECT count() FROM analytics_dw.etl_quarantine FINAL "
                    "WHERE record_key = 'TX5001'") == [(1,)]
    assert wh.query("SELECT count() FROM analytics_dw.etl_quarantine FINAL") == [(2,)]
    assert_in_sync(settings, wh, quarantined=("TX5001", "TX5002"))

    mysql_exec(db, "UPDATE transactions SET transaction_time = '2025-01-14 10:00:00' "
                   "WHERE transaction_id = 'TX5001'")
    report = run_batch(settings)
    assert (report.status, report.rows_read, report.rows_loaded) == ("success", 1, 1)
    assert fact_days(wh, "TX5001") == [("2025-01-14", "SUCCESS", Decimal("11000.00"))]
    assert user_query(wh) == SEED_USER_QUERY + [
        ("Andi Pratama", "2025-01-14", Decimal("11000.00")),
        ("Citra Lestari", "2025-01-14", Decimal("13000.00")),
    ]
    assert_in_sync(settings, wh, quarantined=("TX5002",))


# --- 7. the checkpoint matches the warehouse ---------------------------------------------------

def test_a_second_warehouse_on_the_same_source_gets_every_transaction(settings, wh, warehouse_b):
    settings_b, wh_b = warehouse_b
    run_batch(settings)
    assert_in_sync(settings, wh)
    report = run_batch(settings_b)
    assert (report.status, report.rows_read, report.rows_loaded) == ("success", 4, 4)
    assert user_query(wh_b) == SEED_USER_QUERY
    assert_in_sync(settings_b, wh_b)
    assert_in_sync(settings, wh)


def test_a_warehouse_restored_from_an_older_backup_catches_up(settings, wh, warehouse_b):
    db = settings.mysql_database
    settings_b, wh_b = warehouse_b
    run_batch(settings)
    run_batch(settings_b)
    mysql_exec(db, INSERT_TX, ("TX7001", 3, 2, "21000.00", "SUCCESS", "2025-01-15 10:00:00"))
    mysql_exec(db, INSERT_TX, ("TX7002", 1, 3, "22000.00", "PENDING", "2025-01-15 11:00:00"))
    run_batch(settings)
    mysql_exec(db, INSERT_TX, ("TX7003", 2, 1, "23000.00", "SUCCESS", "2025-01-16 10:00:00"))
    run_batch(settings)
    assert_in_sync(settings, wh)

    report = run_batch(settings_b)
    assert report.status == "success"
    assert [fact(wh_b, tx) for tx in ("TX7001", "TX7002", "TX7003")] == [
        ("SUCCESS", Decimal("21000.00"), "Low"), ("PENDING", Decimal("22000.00"), "Low"),
        ("SUCCESS", Decimal("23000.00"), "Low")]
    assert user_query(wh_b) == SEED_USER_QUERY + [
        ("Citra Lestari", "2025-01-15", Decimal("21000.00")),
        ("Budi Santoso", "2025-01-16", Decimal("23000.00")),
    ]
    assert_in_sync(settings_b, wh_b)


def test_the_write_up_checkpoint_reset_still_makes_a_full_load(settings, wh):
    assert settings.pipeline_name == "transactions_elt"
    run_batch(settings)
    assert run_batch(settings).rows_read == 0  # nothing changed: the checkpoint holds
    mysql_exec(settings.mysql_database,
               "UPDATE checkpoint SET last_synced_at = '1970-01-01 00:00:00' "
               "WHERE pipeline_name = 'transactions_elt'")
    report = run_batch(settings)
    assert (report.mode, report.status, report.rows_read) == ("full", "success", 4)
    assert_in_sync(settings, wh)


# --- R. the reconciliation names what is wrong -------------------------------------------------

def test_reconcile_lists_a_fact_the_source_never_had_as_extra_on_its_day(settings, wh):
    run_batch(settings)
    later = source_now(settings.mysql_database) + timedelta(days=1)
    plant_fact(wh, "TX9999", 1, 1, "5000.00", "SUCCESS", datetime(2025, 1, 10, 9, 0), later)
    result = compare(settings)
    assert [(d.day, d.missing, d.extra, d.changed, d.quarantined)
            for d in result.mismatches] == [(date(2025, 1, 10), [], ["TX9999"], [], [])]
    assert not result.ok


def test_reconcile_names_both_days_of_a_move_not_loaded_yet(settings, wh):
    run_batch(settings)
    mysql_exec(settings.mysql_database, "UPDATE transactions SET transaction_time = "
               "'2025-01-12 09:00:00' WHERE transaction_id = 'TX1001'")
    result = compare(settings)
    assert [(d.day, d.missing, d.extra, d.changed) for d in result.mismatches] == [
        (date(2025, 1, 10), [], ["TX1001"], []), (date(2025, 1, 12), ["TX1001"], [], [])]
    assert not result.ok


def test_a_quarantine_row_whose_reason_does_not_hold_excuses_nothing(settings, wh):
    db = settings.mysql_database
    run_batch(settings)
    plant_quarantine(wh, "TX1001", source_version(db, "TX1001"), "amount is negative")
    result = compare(settings)  # the source's 50000.00 is valid and loaded: equal
    assert (result.ok, result.quarantined) == (True, [])

    later = source_now(db) + timedelta(days=1)  # now the warehouse holds another amount
    plant_fact(wh, "TX1001", 1, 1, "40000.00", "SUCCESS", datetime(2025, 1, 10, 8, 15), later)
    result = compare(settings)
    assert [(d.day, d.missing, d.extra, d.changed, d.quarantined)
            for d in result.mismatches] == [(date(2025, 1, 10), [], [], ["TX1001"], [])]
    assert (result.ok, result.quarantined) == (False, [])


def test_a_stale_fact_of_a_refused_row_is_a_mismatch_not_quarantined(settings, wh):
    db = settings.mysql_database
    run_batch(settings)
    mysql_exec(db, "UPDATE transactions SET amount = -5.00 WHERE transaction_id = 'TX1001'")
    # What a run that refused the new version but kept the old fact would leave behind.
    plant_quarantine(wh, "TX1001", source_version(db, "TX1001"), "amount is negative")
    assert fact(wh, "TX1001") == ("SUCCESS", Decimal("50000.00"), "Medium")
    result = compare(settings)
    assert [(d.day, d.stale, d.quarantined) for d in result.mismatches] == [
        (date(2025, 1, 10), ["TX1001"], [])]
    assert (result.ok, result.quarantined) == (False, [])


def test_reconcile_names_an_impossible_date_neither_loaded_nor_quarantined(settings, wh):
    run_batch(settings)
    write_as(settings.mysql_database, ["SET sql_mode = 'ALLOW_INVALID_DATES'"], INSERT_TX,
             ("TX5002", 2, 2, "12000.00", "SUCCESS", "2025-02-30 10:00:00"))
    result = compare(settings)  # must not raise
    assert [(d.missing, d.extra, d.changed, d.quarantined) for d in result.mismatches] == [
        (["TX5002"], [], [], [])]
    assert (result.ok, result.quarantined) == (False, [])
