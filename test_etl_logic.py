"""Unit tests of the pure logic: categories, status rules, surrogate keys, money, watermark."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from ewallet_etl.config import ConfigError, Settings, parse_clickhouse_url
from ewallet_etl.core.transform import (
    amount_categories,
    amount_category,
    surrogate_keys,
    transform_transactions,
)
from ewallet_etl.core.window import EPOCH, Window, next_window

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


def source_batch(*rows: dict) -> pa.Table:
    """Source transaction rows as the extraction yields them, with sane defaults."""
    base = {
        "transaction_id": "TX", "user_id": 1, "merchant_id": 1, "amount": Decimal("1.00"),
        "status": "SUCCESS", "transaction_time": datetime(2025, 1, 10, 8, 15),
        "updated_at": datetime(2025, 1, 10, 8, 15, 0, 123456), "user_found": 1,
        "merchant_found": 1, "transaction_time_raw": None,
    }
    full = [{**base, **row} for row in rows]
    schema = pa.schema([
        ("transaction_id", pa.string()), ("user_id", pa.uint32()), ("merchant_id", pa.uint32()),
        ("amount", pa.decimal128(38, 10)), ("status", pa.string()),
        ("transaction_time", pa.timestamp("us")), ("updated_at", pa.timestamp("us")),
        ("user_found", pa.int32()), ("merchant_found", pa.int32()),
        ("transaction_time_raw", pa.string()),
    ])
    return pa.Table.from_pylist(full, schema)


@pytest.mark.parametrize("amount, category", [
    ("0.00", "Low"), ("49999.99", "Low"), ("50000.00", "Medium"), ("99999.99", "Medium"),
    ("100000.00", "High"), ("99999999.99", "High"),
])
def test_amount_category_boundaries(amount, category):
    assert amount_category(Decimal(amount)) == category
    vectorised = amount_categories(pa.array([Decimal(amount)], pa.decimal128(18, 2)))
    assert vectorised.to_pylist() == [category]


def test_failed_transaction_is_kept_with_its_status_and_never_a_sale():
    facts, rejects = transform_transactions(
        source_batch({"transaction_id": "TX1004", "status": "FAILED", "amount": Decimal("10000")}),
    )
    assert rejects.num_rows == 0
    assert facts.column("status").to_pylist() == ["FAILED"]
    # a sale is status SUCCESS: the query files filter on it
    assert "SUCCESS" not in facts.column("status").to_pylist()


def test_surrogate_keys_are_deterministic_and_pinned():
    ids = np.arange(1, 6, dtype=np.uint64)
    assert np.array_equal(surrogate_keys(ids, "user"), surrogate_keys(ids.copy(), "user"))
    # pinned values: the same on every run, engine and machine
    assert int(surrogate_keys([1], "user")[0]) == 156718437198615019
    assert int(surrogate_keys([1], "merchant")[0]) == 12961767709351897777


def test_surrogate_keys_are_distinct_and_not_the_natural_key():
    ids = np.arange(0, 1_000_000, dtype=np.uint64)
    users = surrogate_keys(ids, "user")
    merchants = surrogate_keys(ids, "merchant")
    assert len(np.unique(users)) == len(ids)
    assert not np.any(users == ids)
    assert len(np.intersect1d(users, merchants)) == 0


def test_decimal_amounts_are_preserved_exactly():
    amounts = ["0.01", "12345678.91", "99999999.99", "50000.10"]
    facts, _ = transform_transactions(
        source_batch(*({"transaction_id": f"T{i}", "amount": Decimal(a)}
                       for i, a in enumerate(amounts))),
    )
    assert facts.schema.field("amount").type == pa.decimal128(18, 2)
    assert [str(v) for v in facts.column("amount").to_pylist()] == amounts


def test_fact_times_are_utc_seconds_and_version_keeps_microseconds():
    facts, _ = transform_transactions(source_batch({}))
    row = facts.to_pylist()[0]
    assert row["transaction_time"] == datetime(2025, 1, 10, 8, 15, tzinfo=timezone.utc)
    assert str(row["transaction_date"]) == "2025-01-10"
    assert row["_version"] == int(datetime(2025, 1, 10, 8, 15, 0, 123456,
                                           tzinfo=timezone.utc).timestamp() * 1_000_000)


@pytest.mark.parametrize("override, reason", [
    ({"amount": None}, "amount is NULL"),
    ({"amount": Decimal("-0.01")}, "amount is negative"),
    ({"amount": Decimal("10000000000000000")}, "amount exceeds Decimal(18, 2)"),
    ({"amount": Decimal("1.005")}, "amount has more than 2 decimals"),
    ({"status": "CHARGEBACK"}, "unknown status"),
    ({"status": None}, "unknown status"),
    ({"transaction_time": None, "transaction_time_raw": "0000-00-00 00:00:00"},
     "transaction_time is not a valid date"),
    ({"transaction_time": None}, "transaction_time is NULL"),
    ({"transaction_time": datetime(1999, 12, 31)}, "transaction_time before 2000-01-01"),
    ({"transaction_time": datetime(2025, 1, 11, 8, 16)},
     "transaction_time more than a day after updated_at"),
    ({"transaction_id": ""}, "transaction_id is empty"),
])
def test_bad_rows_are_rejected_with_a_reason_and_the_rest_goes_on(override, reason):
    batch = source_batch({"transaction_id": "GOOD"}, {"transaction_id": "BAD", **override})
    facts, rejects = transform_transactions(batch)
    assert facts.column("transaction_id").to_pylist() == ["GOOD"]
    assert rejects.column("reason").to_pylist() == [reason]
    assert '"status"' in rejects.column("raw")[0].as_py()


def test_first_window_is_a_full_load_bounded_by_the_source_clock():
    window = next_window(None, NOW, None, timedelta(seconds=2), timedelta(minutes=5))
    assert window == Window(EPOCH, NOW - timedelta(seconds=2))


def test_incremental_window_overlaps_and_is_capped_by_open_transactions():
    checkpoint = NOW - timedelta(hours=1)
    trx = NOW - timedelta(minutes=10)
    window = next_window(checkpoint, NOW, trx, timedelta(0), timedelta(minutes=5))
    assert window.low == checkpoint - timedelta(minutes=5)
    assert window.high == trx - timedelta(seconds=1)


def test_checkpoint_never_moves_backwards():
    checkpoint = NOW
    window = next_window(checkpoint, NOW, NOW - timedelta(hours=2), timedelta(0), timedelta(0))
    assert window.high == checkpoint and window.low == checkpoint


def test_full_refresh_ignores_the_checkpoint():
    window = next_window(NOW, NOW, None, timedelta(0), timedelta(0), full_refresh=True)
    assert window.low == EPOCH


def test_secrets_never_appear_in_repr_or_description():
    settings = Settings.from_env({
        "MYSQL_PASSWORD": "s3cr3t-my", "CLICKHOUSE_URL": "clickhouse://u:s3cr3t-ch@h:9000/dw",
    })
    for text in (repr(settings), settings.describe()):
        assert "s3cr3t" not in text
    assert settings.warehouse.password == "s3cr3t-ch"


@pytest.mark.parametrize("url, kind, database", [
    ("chdb://.local/chdb", "chdb", "analytics_dw"),
    ("chdb:///tmp/x?database=other_dw", "chdb", "other_dw"),
    ("clickhouse://u:p@host:9000/analytics_dw", "clickhouse", "analytics_dw"),
])
def test_clickhouse_url_forms(url, kind, database):
    target = parse_clickhouse_url(url)
    assert (target.kind, target.database) == (kind, database)


@pytest.mark.parametrize("url", ["mysql://x", "clickhouse://u:p@h:9000/bad-name;drop"])
def test_bad_clickhouse_urls_are_refused(url):
    with pytest.raises(ConfigError):
        parse_clickhouse_url(url)


def test_the_write_up_s_transform_takes_and_gives_pandas_dataframes():
    import pandas as pd

    from ewallet_etl.pipelines.write_up import transform_data

    frame = pd.DataFrame({
        "transaction_id": ["TX1", "TX2", "TX3"], "user_id": [1, 2, 3], "merchant_id": [1, 1, 2],
        "amount": [Decimal("50000.00"), Decimal("99999.99"), Decimal("-1.00")],
        "status": ["SUCCESS", "FAILED", "SUCCESS"],
        "transaction_time": pd.to_datetime(["2025-01-10 08:15:00"] * 3),
        "updated_at": pd.to_datetime(["2025-01-10 08:15:00.123456"] * 3),
    })
    facts, rejects = transform_data(frame)
    assert isinstance(facts, pd.DataFrame) and isinstance(rejects, pd.DataFrame)
    assert facts["transaction_id"].tolist() == ["TX1", "TX2"]
    assert facts["amount"].tolist() == [Decimal("50000.00"), Decimal("99999.99")]
    assert facts["amount_category"].tolist() == ["Medium", "Medium"]
    assert rejects["reason"].tolist() == ["amount is negative"]
    # the same rows as Arrow give the same facts
    arrow_facts, _ = transform_data(pa.Table.from_pandas(frame, preserve_index=False))
    assert arrow_facts.to_pandas().equals(facts)
    as_text = frame.assign(amount=["50000.00", "99999.99", "-1.00"])
    assert transform_data(as_text)[0]["amount"].tolist() == facts["amount"].tolist()
    with pytest.raises(TypeError, match="float"):
        transform_data(frame.assign(amount=[50000.0, 99999.99, -1.0]))


@pytest.mark.parametrize("number, expected", [
    (20250110081500, datetime(2025, 1, 10, 8, 15)),
    (20240229235959, datetime(2024, 2, 29, 23, 59, 59)),   # a leap day
    (20000229000000, datetime(2000, 2, 29)),               # 2000 is a leap year
    (19700101000000, datetime(1970, 1, 1)),
    (19691231235959, datetime(1969, 12, 31, 23, 59, 59)),  # before the epoch
    (99991231235959, datetime(9999, 12, 31, 23, 59, 59)),
])
def test_datetime_numbers_decode_to_the_same_wall_clock_time(number, expected):
    from ewallet_etl.core.transform import decode_times

    decoded = decode_times(pa.table({"transaction_time": pa.array([number], pa.int64())}))
    assert decoded.column("transaction_time").to_pylist() == [expected]
    assert decoded.column("transaction_time_raw").to_pylist() == [None]


@pytest.mark.parametrize("number, text", [
    (0, "0000-00-00 00:00:00"), (20250230100000, "2025-02-30 10:00:00"),
    (20230229000000, "2023-02-29 00:00:00"), (19000229000000, "1900-02-29 00:00:00"),
    (20250010000000, "2025-00-10 00:00:00"), (20251301000000, "2025-13-01 00:00:00"),
    (20250100000000, "2025-01-00 00:00:00"), (20250110246000, "2025-01-10 24:60:00"),
])
def test_numbers_that_are_no_date_are_refused_with_their_text(number, text):
    batch = source_batch({"transaction_id": "GOOD"}, {"transaction_id": "BAD"})
    numbers = pa.array([20250110081500, number], pa.int64())
    batch = batch.set_column(batch.schema.get_field_index("transaction_time"), "transaction_time",
                             numbers)
    facts, rejects = transform_transactions(batch)
    assert facts.column("transaction_id").to_pylist() == ["GOOD"]
    assert rejects.column("reason").to_pylist() == ["transaction_time is not a valid date"]
    assert f'"transaction_time_raw": "{text}"' in rejects.column("raw")[0].as_py()
