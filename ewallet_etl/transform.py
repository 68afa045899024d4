"""Pure transforms: source batches in, warehouse rows (and rejects) out.

Nothing here connects, reads the clock or the environment; `now` comes in as an argument.
Everything is vectorised over Arrow/NumPy columns: no per-row Python on the hot path (only the
rare rejected row is rendered to JSON). Money stays decimal: Arrow decimal128 from the source
to the warehouse's Decimal(18, 2), never a float.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SALE_STATUS = "SUCCESS"
KNOWN_STATUSES = ("SUCCESS", "FAILED", "PENDING", "REFUNDED")

# Amount categories (IDR), the one place they are defined: an amount below a bound gets its
# label; anything from the last bound up is TOP_CATEGORY.
AMOUNT_CATEGORY_BOUNDS: tuple[tuple[Decimal, str], ...] = (
    (Decimal("50000.00"), "Low"),
    (Decimal("100000.00"), "Medium"),
)
TOP_CATEGORY = "High"

WAREHOUSE_AMOUNT = pa.decimal128(18, 2)
MAX_AMOUNT = Decimal("9999999999999999.99")  # the largest Decimal(18, 2)
EARLIEST_TRANSACTION = datetime(2000, 1, 1, tzinfo=timezone.utc)
FUTURE_TOLERANCE = timedelta(days=1)  # clock skew we accept on transaction_time

UTC_SECONDS = pa.timestamp("s", tz="UTC")

# Domain tags in the top bits keep user and merchant keys apart even for equal natural ids
# (natural ids are below 2**60).
KEY_DOMAINS = {"user": 1 << 60, "merchant": 2 << 60}


def amount_category(amount: Decimal) -> str:
    """The category of one amount (the scalar twin of `amount_categories`)."""
    for bound, label in AMOUNT_CATEGORY_BOUNDS:
        if amount < bound:
            return label
    return TOP_CATEGORY


_CATEGORY_LABELS = pa.array([label for _, label in AMOUNT_CATEGORY_BOUNDS] + [TOP_CATEGORY])


def amount_categories(amounts: pa.Array | pa.ChunkedArray) -> pa.Array:
    # Index of each amount's category = how many bounds it is not below (bounds ascend).
    index = np.zeros(len(amounts), dtype=np.int8)
    for bound, _ in AMOUNT_CATEGORY_BOUNDS:
        index += ~_mask(pc.less(amounts, pa.scalar(bound, amounts.type)))
    return _CATEGORY_LABELS.take(index)


def surrogate_keys(natural_ids: np.ndarray, domain: str) -> np.ndarray:
    """Deterministic UInt64 keys: the SplitMix64 finaliser of (id XOR domain tag).

    Each step (xor-shift, multiply by an odd constant) is a bijection on 64-bit integers, so
    distinct ids can never share a key; the result depends only on the id, never on the run,
    engine or machine, and it is not the natural key.
    """
    z = np.asarray(natural_ids, dtype=np.uint64) ^ np.uint64(KEY_DOMAINS[domain])
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def versions(updated_at: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Row versions: the source's change time in microseconds since the epoch."""
    micros = pc.cast(updated_at, pa.timestamp("us")).cast(pa.int64())
    return micros.to_numpy(zero_copy_only=False).astype(np.uint64)


def transform_users(batch: pa.Table) -> pa.Table:
    ids = batch.column("user_id").to_numpy(zero_copy_only=False)
    return pa.table({
        "user_key": surrogate_keys(ids, "user"),
        "user_id": ids.astype(np.uint64),
        "name": batch.column("name"),
        "email": batch.column("email"),
        "city": batch.column("city"),
        "updated_at": _utc_seconds(batch.column("updated_at")),
        "_version": versions(batch.column("updated_at")),
        "_deleted": np.zeros(batch.num_rows, dtype=np.uint8),
    })


def transform_merchants(batch: pa.Table) -> pa.Table:
    ids = batch.column("merchant_id").to_numpy(zero_copy_only=False)
    return pa.table({
        "merchant_key": surrogate_keys(ids, "merchant"),
        "merchant_id": ids.astype(np.uint64),
        "name": batch.column("name"),
        "category": batch.column("category"),
        "city": batch.column("city"),
        "updated_at": _utc_seconds(batch.column("updated_at")),
        "_version": versions(batch.column("updated_at")),
        "_deleted": np.zeros(batch.num_rows, dtype=np.uint8),
    })


def transform_transactions(batch: pa.Table, now: datetime) -> tuple[pa.Table, pa.Table]:
    """Source transactions -> (fact_sales rows, rejects with a reason and the raw row).

    Every status is kept (a sale is status SUCCESS), so a transaction that later turns FAILED
    or REFUNDED replaces its earlier SUCCESS row instead of lingering in the sales.
    """
    reasons = reject_reasons(batch, now)
    rejected = reasons != ""
    clean = batch.filter(pa.array(~rejected)) if rejected.any() else batch
    return _facts(clean), _rejects(batch, reasons, rejected, "transaction_id")


def reject_reasons(batch: pa.Table, now: datetime) -> np.ndarray:
    """One reason per row ('' when the row is good); the first failing rule wins."""
    amount = batch.column("amount")
    status = batch.column("status")
    ttime = batch.column("transaction_time")
    latest = now + FUTURE_TOLERANCE
    rules = [
        (_null_or_empty(batch.column("transaction_id")), "transaction_id is empty"),
        (_mask(amount.is_null()), "amount is NULL"),
        (_mask(pc.less(amount, pa.scalar(Decimal(0), amount.type))), "amount is negative"),
        (_mask(pc.greater(amount, pa.scalar(MAX_AMOUNT, amount.type))),
         "amount exceeds Decimal(18, 2)"),
        (_mask(pc.not_equal(amount, pc.round(amount, 2))), "amount has more than 2 decimals"),
        (~_mask(pc.is_in(status, pa.array(KNOWN_STATUSES))), "unknown status"),
        (~_mask(pc.equal(batch.column("user_found"), 1)), "user_id has no row in users"),
        (~_mask(pc.equal(batch.column("merchant_found"), 1)),
         "merchant_id has no row in merchants"),
        (_mask(ttime.is_null()), "transaction_time is NULL"),
        (_mask(pc.less(_naive_us(ttime), _naive_scalar(EARLIEST_TRANSACTION))),
         "transaction_time before 2000-01-01"),
        (_mask(pc.greater(_naive_us(ttime), _naive_scalar(latest))),
         "transaction_time more than a day in the future"),
    ]
    codes = np.zeros(batch.num_rows, dtype=np.uint8)  # 0 = good, else 1 + the rule's index
    for code, (failing, _) in enumerate(rules, start=1):
        codes[failing & (codes == 0)] = code
    return np.array([""] + [reason for _, reason in rules], dtype=object)[codes]


def _facts(clean: pa.Table) -> pa.Table:
    ttime = _utc_seconds(clean.column("transaction_time"))
    amount = pc.cast(clean.column("amount"), WAREHOUSE_AMOUNT)
    return pa.table({
        "transaction_id": clean.column("transaction_id"),
        "user_key": surrogate_keys(clean.column("user_id").to_numpy(zero_copy_only=False), "user"),
        "merchant_key": surrogate_keys(
            clean.column("merchant_id").to_numpy(zero_copy_only=False), "merchant"
        ),
        "amount": amount,
        "amount_category": amount_categories(amount),
        "status": clean.column("status"),
        "transaction_time": ttime,
        "transaction_date": pc.cast(ttime, pa.date32()),
        "updated_at": _utc_seconds(clean.column("updated_at")),
        "_version": versions(clean.column("updated_at")),
        "_deleted": np.zeros(clean.num_rows, dtype=np.uint8),
    })


def _rejects(batch: pa.Table, reasons: np.ndarray, rejected: np.ndarray, key: str) -> pa.Table:
    bad_rows = batch.filter(pa.array(rejected))
    bad = bad_rows.to_pylist()
    return pa.table({
        "record_key": pa.array([str(row.get(key)) for row in bad], pa.string()),
        "_version": versions(pc.fill_null(bad_rows.column("updated_at"), 0)),
        "reason": pa.array(list(reasons[rejected]), pa.string()),
        "raw": pa.array([json.dumps(row, default=str, ensure_ascii=False) for row in bad],
                        pa.string()),
    })


def _mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Boolean Arrow values -> NumPy, NULL counting as False."""
    return pc.fill_null(values, False).to_numpy(zero_copy_only=False).astype(bool)


def _null_or_empty(values: pa.ChunkedArray) -> np.ndarray:
    return ~_mask(pc.greater(pc.utf8_length(values), 0))


def _naive_us(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Source DATETIMEs are UTC wall clock without a zone; compare them as naive µs."""
    if getattr(values.type, "tz", None):
        values = pc.cast(values, pa.timestamp("us", tz="UTC"))
        return values.cast(pa.int64()).cast(pa.timestamp("us"))
    return pc.cast(values, pa.timestamp("us"))


def _naive_scalar(moment: datetime) -> pa.Scalar:
    return pa.scalar(moment.astimezone(timezone.utc).replace(tzinfo=None), pa.timestamp("us"))


def _utc_seconds(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Source DATETIME (UTC wall clock) -> UTC instants in whole seconds (ClickHouse DateTime)."""
    seconds = pc.floor_temporal(_naive_us(values), unit="second").cast(pa.int64())
    return pc.divide(seconds, 1_000_000).cast(UTC_SECONDS)
