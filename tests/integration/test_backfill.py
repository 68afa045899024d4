"""A backfill reloads exactly the chosen days of transaction_time and leaves the checkpoint's
meaning intact; a dry run plans and counts without writing anything. Both engines."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from ewallet_etl.pipelines.batch import dry_run, run_backfill, run_batch
from ewallet_etl.pipelines.reconcile import compare
from ewallet_etl.warehouse import connect
from tests.helpers import as_decimal, checkpoint_of, mysql_exec

pytestmark = pytest.mark.integration

INSERT_OLD = ("INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, status, "
              "transaction_time, updated_at) VALUES (%s, 3, 2, %s, 'SUCCESS', %s, %s)")


def facts(wh) -> dict[str, tuple]:
    return {tx: (str(day), as_decimal(amount)) for tx, day, amount in wh.query(
        "SELECT transaction_id, transaction_date, amount FROM analytics_dw.v_fact_sales")}


def test_a_backfill_reloads_exactly_the_chosen_days_and_leaves_the_checkpoint(settings, wh):
    db = settings.mysql_database
    run_batch(settings)
    # What no watermark sees: rows stamped before the checkpoint (a restore, a migration that
    # kept updated_at), and hard deletes, on two days.
    mysql_exec(db, INSERT_OLD, ("TXOLD12", "12.34", "2025-01-12 10:00:00", "2025-01-12 11:00:00"))
    mysql_exec(db, INSERT_OLD, ("TXOLD13", "56.78", "2025-01-13 10:00:00", "2025-01-13 11:00:00"))
    mysql_exec(db, "DELETE FROM transactions WHERE transaction_id IN ('TX1001', 'TX1008')")
    assert run_batch(settings).rows_read == 0  # the incremental run cannot see any of it
    checkpoint = checkpoint_of(settings)
    marks = wh.query("SELECT count() FROM analytics_dw.etl_state WHERE kind = 'batch'")

    report = run_backfill(settings, date(2025, 1, 10), date(2025, 1, 13))

    assert (report.mode, report.status, report.rows_deleted) == ("backfill", "success", 2)
    assert report.rows_read == 3  # TX1003, TX1004 (2025-01-10) and TXOLD12; TX1008 is gone
    assert facts(wh) == {
        "TX1003": ("2025-01-10", Decimal("150000.00")),
        "TX1004": ("2025-01-10", Decimal("10000.00")),
        "TXOLD12": ("2025-01-12", Decimal("12.34")),
    }  # TXOLD13 is outside the days: not loaded
    mismatches = compare(settings).mismatches
    assert [(str(d.day), d.missing) for d in mismatches] == [("2025-01-13", ["TXOLD13"])]
    assert checkpoint_of(settings) == checkpoint
    assert wh.query("SELECT count() FROM analytics_dw.etl_state WHERE kind = 'batch'") == marks
    assert wh.query("SELECT mode, status, window_from FROM analytics_dw.etl_runs "
                    "WHERE run_id = {id:String}", {"id": report.run_id}) == [
        ("backfill", "success", "2025-01-10T00:00:00+00:00")]
    before = facts(wh)
    again = run_backfill(settings, date(2025, 1, 10), date(2025, 1, 13))  # idempotent
    assert again.rows_deleted == 0 and facts(wh) == before


def test_a_dry_run_plans_and_counts_and_writes_nothing(settings, wh):
    plan = dry_run(settings)
    assert plan["mode"] == "full" and plan["rows"] == {"transactions": 4, "users": 3,
                                                       "merchants": 3}
    assert wh.query("SELECT count() FROM analytics_dw.etl_runs") == [(0,)]
    assert checkpoint_of(settings).year == 1970
    run_batch(settings)
    mysql_exec(settings.mysql_database,
               "UPDATE transactions SET status = 'REFUNDED' WHERE transaction_id = 'TX1003'")
    plan = dry_run(settings)
    assert plan["mode"] == "incremental" and plan["rows"]["transactions"] == 1
    assert wh.query("SELECT count() FROM analytics_dw.etl_runs") == [(1,)]


def test_a_dry_run_into_a_fresh_warehouse_creates_nothing_there(settings):
    from dataclasses import replace

    fresh = replace(settings, warehouse=replace(settings.warehouse,
                                                database=settings.warehouse.database + "_x"))
    assert dry_run(fresh)["mode"] == "full"
    wh = connect(fresh.warehouse)
    try:
        assert wh.query("SELECT count() FROM system.databases WHERE name = {d:String}",
                        {"d": fresh.warehouse.database}) == [(0,)]
    finally:
        wh.close()
