"""Batch ELT on real MariaDB and both ClickHouse engines: the seed, the incremental batch,
re-runs, full refreshes and the two business queries, asserted to the cent."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ewallet_etl.core.transform import surrogate_keys
from ewallet_etl.pipelines.batch import run_batch
from tests.helpers import INCREMENTAL_BATCH, ROOT, fact_state, mysql_admin, mysql_exec, run_sql_file

pytestmark = pytest.mark.integration

SEED_FACTS = {
    # transaction_id: (user_id, amount, category, status)
    "TX1001": (1, "50000.00", "Medium", "SUCCESS"),
    "TX1003": (2, "150000.00", "High", "SUCCESS"),
    "TX1004": (2, "10000.00", "Low", "FAILED"),
    "TX1008": (2, "65000.00", "Medium", "SUCCESS"),
}
BATCH_FACTS = {
    "TX1009": (1, "49999.99", "Low", "SUCCESS"),
    "TX1010": (3, "100000.00", "High", "SUCCESS"),
    "TX1011": (3, "99999.99", "Medium", "PENDING"),
}


def _facts_by_id(wh) -> dict[str, tuple]:
    rows = wh.query(
        "SELECT transaction_id, user_key, amount, amount_category, status "
        "FROM analytics_dw.v_fact_sales"
    )
    return {r[0]: (r[1], Decimal(str(r[2])).quantize(Decimal("0.01")), r[3], r[4]) for r in rows}


def _expected(table: dict) -> dict[str, tuple]:
    return {
        tx: (int(surrogate_keys([uid], "user")[0]), Decimal(amount), cat, status)
        for tx, (uid, amount, cat, status) in table.items()
    }


def _query_file(wh, name: str) -> list[tuple]:
    return wh.query((ROOT / name).read_text().strip().rstrip(";"))


def test_full_load_gives_exactly_the_seed_rows(settings, wh):
    report = run_batch(settings)
    assert (report.mode, report.rows_read, report.rows_loaded, report.sales) == ("full", 4, 4, 3)
    assert report.rows_rejected == 0
    assert _facts_by_id(wh) == _expected(SEED_FACTS)


def test_every_fact_key_resolves_to_a_dimension_row(settings, wh):
    run_batch(settings)
    orphans = wh.query(
        "SELECT count() FROM analytics_dw.v_fact_sales WHERE "
        "user_key NOT IN (SELECT user_key FROM analytics_dw.v_dim_users) OR "
        "merchant_key NOT IN (SELECT merchant_key FROM analytics_dw.v_dim_merchants)"
    )
    assert orphans == [(0,)]
    assert wh.query("SELECT count() FROM analytics_dw.v_dim_users") == [(3,)]
    assert wh.query("SELECT count() FROM analytics_dw.v_dim_merchants") == [(3,)]


def test_incremental_batch_loads_exactly_the_three_new_rows(settings, wh):
    run_batch(settings)
    run_sql_file(mysql_admin(settings.mysql_database), INCREMENTAL_BATCH)
    report = run_batch(settings)
    assert report.mode == "incremental"
    assert (report.rows_read, report.rows_loaded, report.rows_reread) == (3, 3, 0)
    assert _facts_by_id(wh) == _expected({**SEED_FACTS, **BATCH_FACTS})


def test_second_incremental_run_loads_nothing_and_changes_nothing(settings, wh):
    run_batch(settings)
    run_sql_file(mysql_admin(settings.mysql_database), INCREMENTAL_BATCH)
    run_batch(settings)
    before = fact_state(wh)
    report = run_batch(settings)
    assert report.rows_read - report.rows_reread == 0
    assert fact_state(wh) == before


def test_overlap_rereads_are_absorbed(settings, wh):
    """With a wide overlap every run re-reads everything: totals must not double."""
    from dataclasses import replace

    wide = replace(settings, overlap_seconds=10**9)
    run_batch(wide)
    before = fact_state(wh)
    report = run_batch(wide)
    assert report.rows_reread == 4
    assert fact_state(wh) == before
    assert wh.query("SELECT count(), sum(amount) FROM analytics_dw.v_fact_sales "
                    "WHERE status = 'SUCCESS'")[0][0] == 3


def test_full_refresh_twice_gives_the_same_warehouse(settings, wh):
    run_batch(settings, full_refresh=True)
    first = fact_state(wh)
    report = run_batch(settings, full_refresh=True)
    assert report.mode == "full" and report.rows_read == 4
    assert fact_state(wh) == first


def test_checkpoint_reset_sql_of_the_write_up_forces_a_full_load(settings, wh):
    run_batch(settings)
    mysql_exec(settings.mysql_database,
               "UPDATE checkpoint SET last_synced_at = '1970-01-01 00:00:00' "
               "WHERE pipeline_name = 'transactions_elt'")
    report = run_batch(settings)
    assert (report.mode, report.rows_read) == ("full", 4)
    assert len(fact_state(wh)) == 4


def test_checkpoint_moves_to_the_window_end_from_the_source_clock(settings):
    report = run_batch(settings)
    (saved,) = mysql_exec(settings.mysql_database,
                          "SELECT last_synced_at FROM checkpoint WHERE pipeline_name = %s",
                          (settings.pipeline_name,))[0]
    (now,) = mysql_exec(settings.mysql_database, "SELECT UTC_TIMESTAMP(6)")[0]
    assert saved == report.window.high.replace(tzinfo=None)
    assert saved <= now


def test_user_query_file_returns_daily_totals_to_the_cent(settings, wh):
    run_batch(settings)
    run_sql_file(mysql_admin(settings.mysql_database), INCREMENTAL_BATCH)
    run_batch(settings)
    rows = [(name, str(day), Decimal(str(total)).quantize(Decimal("0.01")))
            for name, day, total in _query_file(wh, "Querying_Total_Transaction_User.sql")]
    assert rows == [
        ("Andi Pratama", "2025-01-10", Decimal("50000.00")),
        ("Budi Santoso", "2025-01-10", Decimal("150000.00")),
        ("Budi Santoso", "2025-01-11", Decimal("65000.00")),
        ("Andi Pratama", "2025-01-12", Decimal("49999.99")),
        ("Citra Lestari", "2025-01-12", Decimal("100000.00")),
    ]


def test_merchant_query_file_counts_sales_only(settings, wh):
    run_batch(settings)
    run_batch(settings, full_refresh=True)  # loading twice never doubles a count
    rows = _query_file(wh, "Querying_Total_Transaction_Merchant.sql")
    assert rows == [("Kopi Kenangan", "Food & Beverage", 2), ("Tokopedia", "E-commerce", 1)]


def test_the_write_ups_flat_functions_load_the_seed(settings, wh):
    """etl_pipeline.py keeps get_last_watermark/extract_data/transform_data/load_data/
    update_watermark; strung together by hand they load the seed and move the checkpoint."""
    import etl_pipeline as etl

    assert etl.get_last_watermark(settings) is None
    window, chunks = etl.extract_data(None, settings)
    loaded = 0
    for chunk in chunks:
        facts, rejects = etl.transform_data(chunk)
        assert rejects.num_rows == 0
        etl.load_data(wh, facts)
        loaded += facts.num_rows
    etl.update_watermark(window.high, settings)
    assert loaded == 4
    assert [row[0] for row in fact_state(wh)] == sorted(SEED_FACTS)
    assert etl.get_last_watermark(settings) == window.high
