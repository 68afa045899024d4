"""The warehouse insert is exact: golden values through both engines, and ch_native's
vectorised Native encoding byte for byte equal to clickhouse-driver's own generic columns.

Money must survive to the cent (negatives too: the transform rejects them, the writer must not
care), times to the second, dates, and any Unicode text; bad values are refused, never bent.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pyarrow as pa
import pytest
from clickhouse_driver import Client
from clickhouse_driver.bufferedwriter import CompressedBufferedWriter
from clickhouse_driver.columns.service import write_column
from clickhouse_driver.context import Context

from ewallet_etl.core.transform import UTC_SECONDS, WAREHOUSE_AMOUNT, surrogate_keys
from ewallet_etl.warehouse import WarehouseError
from ewallet_etl.warehouse import native as ch_native

GOLDEN_AMOUNTS = ["0.01", "-0.01", "0.00", "49999.99", "50000.00", "99999999.99",
                  "9999999999999999.99", "-9999999999999999.99", "1234567.89"]
TEXTS = ["Citra Lestari", "Éko Gedé", "中文商户", "😀 emoji", "", "tab\there, quote ' \" \\",
         "x" * 300, "ü" * 70_000]
# Not 1970-01-01 itself: ClickHouse 18.16 prints day 0 as 0000-00-00.
TIMES = [datetime(1970, 1, 2, 0, 0, 1), datetime(2000, 1, 1), datetime(2025, 1, 10, 8, 15),
         datetime(2038, 1, 19, 3, 14, 8), datetime(2105, 12, 31, 23, 59, 59)]


# --- ch_native against the driver's own encoding (no server) ---------------------------------

class _Sink:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(bytes(data))


def driver_bytes(ch_type: str, items: list) -> bytes:
    """What clickhouse-driver's generic column writes for these Python values."""
    context = Context()
    context.client_settings = Client("localhost").client_settings
    context.settings = {"use_client_time_zone": True}  # no server here; items are epoch ints
    sink = _Sink()
    buf = CompressedBufferedWriter(sink, 1 << 20)  # its "compressor" only collects the bytes
    write_column(context, "c", ch_type, list(items), buf)
    buf.flush()
    return b"".join(sink.parts)


def _epoch(moment: datetime) -> int:
    return int(moment.replace(tzinfo=timezone.utc).timestamp())


CASES = [
    ("Decimal(18, 2)", pa.array([Decimal(a) for a in GOLDEN_AMOUNTS], WAREHOUSE_AMOUNT),
     [Decimal(a) for a in GOLDEN_AMOUNTS]),
    ("Decimal(18, 2)", pa.array([Decimal("12.5"), Decimal("-3")], pa.decimal128(38, 10)),
     [Decimal("12.5"), Decimal("-3")]),
    ("Decimal(9, 4)", pa.array([Decimal("-99999.9999"), Decimal("0.0001")], pa.decimal128(9, 4)),
     [Decimal("-99999.9999"), Decimal("0.0001")]),
    ("String", pa.array(TEXTS), TEXTS),
    ("String", pa.array(TEXTS, pa.large_string()), TEXTS),
    ("String", pa.array(["TX1", "TX2", "TX3"]), ["TX1", "TX2", "TX3"]),
    ("String", pa.array([], pa.string()), []),
    ("UInt64", pa.array(surrogate_keys([1, 2, 10_000], "user")),
     [int(k) for k in surrogate_keys([1, 2, 10_000], "user")]),
    ("UInt8", pa.array([0, 1, 255], pa.uint8()), [0, 1, 255]),
    ("Int64", pa.array([-(2**63), 0, 2**63 - 1], pa.int64()), [-(2**63), 0, 2**63 - 1]),
    ("Float64", pa.array([1.5, -0.0, 1e300]), [1.5, -0.0, 1e300]),
    ("DateTime('UTC')", pa.array(TIMES, pa.timestamp("us")).cast(UTC_SECONDS),
     [_epoch(t) for t in TIMES]),
    ("DateTime", pa.array(TIMES, pa.timestamp("s")), [_epoch(t) for t in TIMES]),
    ("Date", pa.array([date(1970, 1, 1), date(2025, 1, 10), date(2149, 6, 6)]),
     [date(1970, 1, 1), date(2025, 1, 10), date(2149, 6, 6)]),
    ("Nullable(String)", pa.array(["a", None, "ü"]), ["a", None, "ü"]),
    ("Nullable(Decimal(18, 2))", pa.array([Decimal("1.25"), None], WAREHOUSE_AMOUNT),
     [Decimal("1.25"), None]),
    ("Nullable(UInt64)", pa.array([None, 7], pa.uint64()), [None, 7]),
]


@pytest.mark.parametrize("ch_type, column, items", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_native_encoding_equals_the_drivers(ch_type, column, items):
    assert ch_native.encode_column(column, ch_type) == driver_bytes(ch_type, items)


def test_slices_and_chunked_columns_encode_their_own_rows_only():
    base = pa.array(TEXTS + ["tail"])
    sliced = base.slice(2, 4)
    chunked = pa.chunked_array([base.slice(0, 3), base.slice(3)])
    assert ch_native.encode_column(sliced, "String") == driver_bytes("String", TEXTS[2:6])
    assert ch_native.encode_column(chunked, "String") == driver_bytes("String", TEXTS + ["tail"])
    money = pa.array([Decimal(a) for a in GOLDEN_AMOUNTS], WAREHOUSE_AMOUNT).slice(3, 3)
    assert ch_native.encode_column(money, "Decimal(18, 2)") == driver_bytes(
        "Decimal(18, 2)", [Decimal(a) for a in GOLDEN_AMOUNTS[3:6]])


@pytest.mark.parametrize("column, ch_type, error", [
    (pa.array(["a", None]), "String", ValueError),  # NULL in a non-Nullable column
    (pa.array([Decimal("1.005")], pa.decimal128(10, 3)), "Decimal(18, 2)", pa.ArrowInvalid),
    (pa.array([Decimal("10000000000000000.00")], pa.decimal128(38, 2)), "Decimal(18, 2)",
     ValueError),  # 17 integer digits do not fit Decimal(18, 2)
    (pa.array([-1], pa.int64()), "UInt64", ValueError),
    (pa.array([256], pa.int64()), "UInt8", ValueError),
    (pa.array([datetime(2025, 1, 1, 0, 0, 0, 500_000)], pa.timestamp("us")), "DateTime",
     pa.ArrowInvalid),  # a sub-second time is refused, not truncated
    (pa.array([datetime(1969, 12, 31, 23, 59, 59)], pa.timestamp("s")), "DateTime", ValueError),
    (pa.array([date(1969, 12, 31)]), "Date", ValueError),
    (pa.array(["a"]), "LowCardinality(String)", ch_native.UnsupportedType),
    (pa.array([1.5]), "UInt64", ch_native.UnsupportedType),
    (pa.array([Decimal("1")], pa.decimal128(38, 0)), "Decimal(38, 0)", ch_native.UnsupportedType),
])
def test_bad_values_are_refused_never_bent(column, ch_type, error):
    with pytest.raises(error):
        ch_native.encode_column(column, ch_type)


# --- round trips through both engines ----------------------------------------------------------

def _facts(n: int) -> pa.Table:
    ids = [f"TX{i:04d}" for i in range(n)]
    amounts = [Decimal(GOLDEN_AMOUNTS[i % len(GOLDEN_AMOUNTS)]) for i in range(n)]
    times = [TIMES[i % len(TIMES)] for i in range(n)]
    return pa.table({
        "transaction_id": pa.array(ids),
        "user_key": surrogate_keys(list(range(1, n + 1)), "user"),
        "merchant_key": surrogate_keys(list(range(1, n + 1)), "merchant"),
        "amount": pa.array(amounts, WAREHOUSE_AMOUNT),
        "amount_category": pa.array([TEXTS[i % len(TEXTS)] for i in range(n)]),
        "status": pa.array(["SUCCESS"] * n),
        "transaction_time": pa.array(times, pa.timestamp("us")).cast(UTC_SECONDS),
        "transaction_date": pa.array([t.date() for t in times], pa.date32()),
        "updated_at": pa.array(times, pa.timestamp("us")).cast(UTC_SECONDS),
        "_version": pa.array(range(n), pa.uint64()),
        "_deleted": pa.array([0] * n, pa.uint8()),
    })


def _read_back(wh) -> list[tuple]:
    rows = wh.query(
        "SELECT transaction_id, toString(amount), amount, toString(transaction_time), "
        "toString(transaction_date), amount_category, user_key "
        "FROM analytics_dw.fact_sales ORDER BY transaction_id")
    return [(tx, Decimal(text), Decimal(str(value)), t, d, s, int(k))
            for tx, text, value, t, d, s, k in rows]


def _expected(table: pa.Table) -> list[tuple]:
    out = []
    for row in table.to_pylist():
        moment = row["transaction_time"].astimezone(timezone.utc)
        out.append((row["transaction_id"], row["amount"], row["amount"],
                    moment.strftime("%Y-%m-%d %H:%M:%S"), row["transaction_date"].isoformat(),
                    row["amount_category"], int(row["user_key"])))
    return out


@pytest.mark.integration
def test_golden_values_round_trip_exactly(settings, wh):
    facts = _facts(len(GOLDEN_AMOUNTS) * len(TEXTS))
    wh.insert("fact_sales", facts)
    assert _read_back(wh) == _expected(facts)


@pytest.mark.integration
def test_chunked_sliced_and_multi_block_inserts_land_every_row_once(settings, wh):
    facts = _facts(50)
    pieces = pa.concat_tables([facts.slice(0, 7), facts.slice(7, 20), facts.slice(27)])
    if wh.engine == "clickhouse-server":  # several Native blocks in one INSERT
        wh._client.client_settings["insert_block_size"] = 8
    wh.insert("fact_sales", pieces)
    assert _read_back(wh) == _expected(facts)


@pytest.mark.integration
def test_dimension_text_round_trips(settings, wh):
    n = len(TEXTS)
    users = pa.table({
        "user_key": surrogate_keys(list(range(1, n + 1)), "user"),
        "user_id": pa.array(range(1, n + 1), pa.uint64()),
        "name": pa.array(TEXTS), "email": pa.array(list(reversed(TEXTS))),
        "city": pa.array(["Jakarta"] * n),
        "updated_at": pa.array([TIMES[2]] * n, pa.timestamp("us")).cast(UTC_SECONDS),
        "_version": pa.array([1] * n, pa.uint64()), "_deleted": pa.array([0] * n, pa.uint8()),
    })
    wh.insert("dim_users", users)
    rows = wh.query("SELECT name, email FROM analytics_dw.dim_users ORDER BY user_id")
    assert rows == list(zip(TEXTS, reversed(TEXTS), strict=True))


@pytest.mark.integration
def test_a_refused_value_inserts_nothing(settings, wh):
    facts = _facts(3)
    bad = facts.set_column(facts.schema.get_field_index("user_key"), "user_key",
                           pa.array([1, None, 3], pa.uint64()))
    with pytest.raises((WarehouseError, ValueError, pa.ArrowException)):
        wh.insert("fact_sales", bad)
    assert wh.query("SELECT count() FROM analytics_dw.fact_sales") == [(0,)]
