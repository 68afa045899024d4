"""fact_sales keyed by the transaction id alone, and the move of a warehouse of the old layout
(keyed by day, partitioned by month) to it. Both ClickHouse engines."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest

from ewallet_etl.core.transform import transform_transactions
from ewallet_etl.pipelines.batch import run_batch
from ewallet_etl.pipelines.reconcile import compare
from ewallet_etl.warehouse import FACT_SORTING_KEY, WAREHOUSE_DDL, ensure_schema
from tests.helpers import as_decimal, mysql_exec

pytestmark = pytest.mark.integration

OLD_LAYOUT = """
CREATE TABLE analytics_dw.fact_sales (
    transaction_id String, user_key UInt64, merchant_key UInt64, amount Decimal(18, 2),
    amount_category String, status String, transaction_time DateTime('UTC'),
    transaction_date Date, updated_at DateTime('UTC'), _version UInt64, _deleted UInt8
) ENGINE = ReplacingMergeTree(_version)
PARTITION BY toYYYYMM(transaction_date)
ORDER BY (transaction_date, transaction_id)
"""


OLD_COLUMNS = ("transaction_id, user_key, merchant_key, amount, amount_category, status, "
               "transaction_time, transaction_date, updated_at, _version, _deleted")


def source_facts(db: str, tx: str) -> pa.Table:
    """The fact row the pipeline makes of one source transaction."""
    rows = mysql_exec(db, "SELECT transaction_id, user_id, merchant_id, amount, status, "
                          "transaction_time, updated_at FROM transactions "
                          "WHERE transaction_id = %s", (tx,))
    names = ("transaction_id", "user_id", "merchant_id", "amount", "status",
             "transaction_time", "updated_at")
    batch = pa.table({name: [row[i] for row in rows] for i, name in enumerate(names)})
    facts, rejects = transform_transactions(batch)
    assert rejects.num_rows == 0
    return facts


def sorting_key(wh) -> str:
    return wh.query("SELECT sorting_key FROM system.tables WHERE database = {db:String} "
                    "AND name = 'fact_sales'", {"db": wh.database})[0][0]


def test_a_fact_sales_of_the_old_layout_is_moved_with_its_current_rows(settings, wh):
    """The old key kept a moved transaction on both days, and the sweep's tombstone of the old
    day's row may carry a higher version than the live row: the move keeps the live row, once."""
    run_batch(settings)  # dimensions and facts of the seed
    mysql_exec(settings.mysql_database, "UPDATE transactions SET transaction_time = "
               "'2025-02-03 09:00:00' WHERE transaction_id = 'TX1001'")
    wh.execute("RENAME TABLE analytics_dw.fact_sales TO analytics_dw.fact_sales_seed")
    wh.execute(OLD_LAYOUT)
    wh.execute(f"INSERT INTO analytics_dw.fact_sales SELECT {OLD_COLUMNS} "
               "FROM analytics_dw.fact_sales_seed")
    wh.execute("DROP TABLE analytics_dw.fact_sales_seed")
    # What the old layout did with a moved day: the new version on its day, the old one kept.
    moved = source_facts(settings.mysql_database, "TX1001")
    wh.insert("fact_sales", moved)
    assert wh.query("SELECT count() FROM analytics_dw.v_fact_sales "
                    "WHERE transaction_id = 'TX1001'") == [(2,)]
    # A sweep tombstone of the old day's row, versioned above the live row (as --full-refresh
    # wrote them): it must not hide the live row after the move.
    wh.execute("INSERT INTO analytics_dw.fact_sales SELECT transaction_id, user_key, "
               "merchant_key, amount, amount_category, status, transaction_time, "
               "transaction_date, updated_at, _version + 1000000000, 1 "
               "FROM analytics_dw.fact_sales WHERE transaction_id = 'TX1001' "
               "AND transaction_date = '2025-01-10'")
    assert sorting_key(wh) == "transaction_date, transaction_id"

    ensure_schema(wh, WAREHOUSE_DDL)

    assert sorting_key(wh) == FACT_SORTING_KEY
    # the column the MongoDB source brought, added on the way: these facts are MySQL's
    assert wh.query("SELECT DISTINCT source FROM analytics_dw.fact_sales") == [("mysql",)]
    assert wh.query("SELECT transaction_id, toString(transaction_date), status, amount "
                    "FROM analytics_dw.v_fact_sales ORDER BY transaction_id") == [
        ("TX1001", "2025-02-03", "SUCCESS", Decimal("50000.00")),
        ("TX1003", "2025-01-10", "SUCCESS", Decimal("150000.00")),
        ("TX1004", "2025-01-10", "FAILED", Decimal("10000.00")),
        ("TX1008", "2025-01-11", "SUCCESS", Decimal("65000.00")),
    ]
    assert compare(settings).ok
    ensure_schema(wh, WAREHOUSE_DDL)  # once moved, nothing more happens
    assert wh.query("SELECT count() FROM analytics_dw.fact_sales") == [(4,)]
    assert sorted(name for (name,) in wh.query(
        "SELECT name FROM system.tables WHERE database = {db:String} AND startsWith(name, 'fact')",
        {"db": wh.database})) == ["fact_sales"]


def test_a_moved_day_replaces_the_old_row_on_the_next_incremental_run(settings, wh):
    db = settings.mysql_database
    run_batch(settings)
    for when in ("2025-01-12 09:00:00", "2025-02-03 09:00:00", "2025-01-10 08:15:00"):
        mysql_exec(db, "UPDATE transactions SET transaction_time = %s "
                       "WHERE transaction_id = 'TX1001'", (when,))
        run_batch(settings)
        rows = wh.query("SELECT toString(transaction_time), amount FROM analytics_dw.v_fact_sales "
                        "WHERE transaction_id = 'TX1001'")
        assert [(t, as_decimal(a)) for t, a in rows] == [(when, Decimal("50000.00"))]
        assert compare(settings).ok
