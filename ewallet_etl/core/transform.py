"""Pure transforms: source batches in, warehouse rows (and rejects) out.

Nothing here connects, reads the clock or the environment; `now` comes in as an argument.
Everything is vectorised over Arrow/NumPy columns: no per-row Python on the hot path (only the
rare rejected row is rendered to JSON). Money stays decimal: Arrow decimal128 from the source
to the warehouse's Decimal(18, 2), never a float.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ewallet_etl.core.value_rules import (  # noqa: F401  (SALE_STATUS etc.: the batch's names)
    AMOUNT_NEGATIVE,
    AMOUNT_NULL,
    AMOUNT_SCALE,
    AMOUNT_TOO_LARGE,
    AMOUNT_TOO_PRECISE,
    KNOWN_STATUSES,
    MAX_AMOUNT,
    MAX_CENTS,
    SALE_STATUS,
    UNKNOWN_STATUS,
)

# Amount categories (IDR), the one place they are defined: an amount below a bound gets its
# label; anything from the last bound up is TOP_CATEGORY.
AMOUNT_CATEGORY_BOUNDS: tuple[tuple[Decimal, str], ...] = (
    (Decimal("50000.00"), "Low"),
    (Decimal("100000.00"), "Medium"),
)
TOP_CATEGORY = "High"

WAREHOUSE_AMOUNT = pa.decimal128(18, 2)
EARLIEST_TRANSACTION = datetime(2000, 1, 1, tzinfo=timezone.utc)
# How far transaction_time may lie after the row's own change time (clock skew between the
# application and the database). Measured from updated_at, not from the clock of the run: a
# row's verdict then depends on the row alone, so a refused version stays refused until the
# row changes, which gives it a new version (and a new verdict).
FUTURE_TOLERANCE = timedelta(days=1)

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


_CATEGORY_LABELS = pa.array(np.array([label for _, label in AMOUNT_CATEGORY_BOUNDS]
                                     + [TOP_CATEGORY]))  # from NumPy: keeps pandas unimported
_CATEGORY_BOUNDS_CENTS = np.array([int(bound * 100) for bound, _ in AMOUNT_CATEGORY_BOUNDS])


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


# A dimension's text attributes, which an inferred member leaves empty.
DIMENSION_ATTRIBUTES = {"user": ("name", "email", "city"), "merchant": ("name", "category", "city")}


def inferred_members(natural_ids: np.ndarray, domain: str) -> pa.Table:
    """dim_users / dim_merchants rows (`domain` "user" or "merchant") for ids a loaded fact refers
    to but the source has no row of (yet): Kimball's inferred members. Version 0, so the real
    row replaces it whenever it arrives; empty attributes, so reports show the fact's money
    under an empty name meanwhile."""
    ids = np.unique(np.asarray(natural_ids, dtype=np.uint64))
    return pa.table({
        f"{domain}_key": surrogate_keys(ids, domain), f"{domain}_id": ids,
        **_empty_attributes(len(ids), DIMENSION_ATTRIBUTES[domain]),
    })


def _empty_attributes(n: int, names: tuple[str, ...]) -> dict[str, Any]:
    return {
        **{name: pa.array([""] * n, pa.string()) for name in names},
        "updated_at": pa.array(np.zeros(n, dtype=np.int64), pa.int64()).cast(UTC_SECONDS),
        "_version": np.zeros(n, dtype=np.uint64),
        "_deleted": np.zeros(n, dtype=np.uint8),
    }


def retractions(rejects: pa.Table) -> pa.Table:
    """fact_sales tombstones for refused rows: the refused version, `_deleted` = 1. A version
    refused now replaces whatever older version was loaded, so a stale amount or status never
    stays counted; the next good version of the row (a newer change) replaces the tombstone."""
    keep = pc.not_equal(rejects.column("reason"), TRANSACTION_RULES[NO_KEY_RULE - 1])
    rows = rejects.filter(keep)
    n = rows.num_rows
    zeros = np.zeros(n, dtype=np.uint64)
    return pa.table({
        "transaction_id": rows.column("record_key"),
        "user_key": zeros, "merchant_key": zeros,
        "amount": pa.array([Decimal(0)] * n, WAREHOUSE_AMOUNT),
        "amount_category": pa.array([""] * n, pa.string()),
        "status": pa.array([""] * n, pa.string()),
        "transaction_time": pa.array(np.zeros(n, dtype=np.int64), pa.int64()).cast(UTC_SECONDS),
        "transaction_date": pa.array(np.zeros(n, dtype=np.int32), pa.date32()),
        "updated_at": pa.array(np.zeros(n, dtype=np.int64), pa.int64()).cast(UTC_SECONDS),
        "_version": rows.column("_version"),
        "_deleted": np.ones(n, dtype=np.uint8),
    })


def transform_transactions(batch: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Source transactions -> (fact_sales rows, rejects with a reason and the raw row).

    Every status is kept (a sale is status SUCCESS), so a transaction that later turns FAILED
    or REFUNDED replaces its earlier SUCCESS row instead of lingering in the sales. Whether a
    row is refused depends on the row alone (`reject_codes`); a refused row's earlier version,
    if one was loaded, is retracted by the caller (`retractions`).
    """
    batch = decode_times(batch)
    amount = batch.column("amount")
    unscaled = _unscaled_int64(amount)  # None: some value needs Arrow's decimal kernels
    cents = None if unscaled is None else _to_cents(unscaled, amount.type.scale)
    codes = reject_codes(batch, unscaled, cents)
    rejected = codes != 0
    if rejected.any():
        clean = batch.filter(pa.array(~rejected))
        cents = None if cents is None else cents[~rejected]
    else:
        clean = batch
    return _facts(clean, cents), _rejects(batch, codes, rejected, "transaction_id")


def decode_times(batch: pa.Table) -> pa.Table:
    """`transaction_time` as the extraction reads it, a number YYYYMMDDhhmmss[.ffffff] (what
    MySQL gives for `datetime + 0`: cheap, and never a value a reader cannot convert), into UTC
    wall-clock timestamps. A number that is no date ('0000-00-00', '2025-02-30') becomes NULL,
    with its text in `transaction_time_raw`. A batch that already holds timestamps is returned
    as it is."""
    column = batch.column("transaction_time")
    if not (pa.types.is_integer(column.type) or pa.types.is_decimal(column.type)):
        return batch
    whole, micros = _number_parts(column)
    if column.null_count:
        valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
        values = np.where(valid, whole, 0)
    else:
        valid, values = np.ones(len(whole), bool), whole
    date, clock = np.divmod(values, 1_000_000)
    year_month, day = np.divmod(date, 100)
    year, month = np.divmod(year_month, 100)
    hour, minute_second = np.divmod(clock, 10_000)
    minute, second = np.divmod(minute_second, 100)
    first_day, month_days = _month_table()
    month_index = np.clip(year * 12 + month - 1, 0, len(first_day) - 1)
    ok = (valid & (year >= 1) & (year <= 9999) & (month >= 1) & (month <= 12) & (day >= 1)
          & (day <= month_days[month_index]) & (hour < 24) & (minute < 60) & (second < 60))
    epoch_us = (((first_day[month_index] + day - 1) * 86_400 + hour * 3_600 + minute * 60
                 + second) * 1_000_000 + micros)
    times = pa.array(epoch_us, pa.int64(), mask=None if ok.all() else ~ok).cast(
        pa.timestamp("us"))
    bad = valid & ~ok
    if bad.any():  # rare: only impossible dates are rendered
        raw: list[str | None] = [None] * len(values)
        for i in np.flatnonzero(bad).tolist():
            raw[i] = (f"{year[i]:04d}-{month[i]:02d}-{day[i]:02d} "
                      f"{hour[i]:02d}:{minute[i]:02d}:{second[i]:02d}")
        raw_column = pa.array(raw, pa.string())
    else:
        raw_column = pa.nulls(len(values), pa.string())
    index = batch.schema.get_field_index("transaction_time")
    batch = batch.set_column(index, "transaction_time", times)
    if RAW_TIME in batch.column_names:
        return batch.set_column(batch.schema.get_field_index(RAW_TIME), RAW_TIME, raw_column)
    return batch.append_column(RAW_TIME, raw_column)


def _number_parts(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A YYYYMMDDhhmmss[.ffffff] column -> (the whole number, microseconds), as int64."""
    if pa.types.is_integer(column.type):
        return (pc.fill_null(column, 0).to_numpy(zero_copy_only=False).astype(np.int64),
                np.zeros(len(column), dtype=np.int64))
    # A decimal: its fraction has at most 6 digits (DATETIME(6)); whole numbers fit int64.
    scaled = pc.cast(pc.fill_null(column, 0), pa.decimal128(30, 6))
    whole = pc.cast(pc.floor(scaled), pa.int64()).to_numpy(zero_copy_only=False)
    fraction = pc.subtract(scaled, pc.cast(pa.array(whole, pa.int64()), pa.decimal128(30, 6)))
    fraction = pc.cast(fraction, pa.decimal128(7, 6))  # below one second
    micros = pc.cast(pc.multiply(fraction, pa.scalar(Decimal(1_000_000), pa.decimal128(7, 0))),
                     pa.int64(), safe=False)
    return whole.astype(np.int64), micros.to_numpy(zero_copy_only=False).astype(np.int64)


@functools.cache
def _month_table() -> tuple[np.ndarray, np.ndarray]:
    """Per month of the years 0-9999 (index year * 12 + month - 1): the days from 1970-01-01
    to its first day, and its number of days. A lookup instead of calendar arithmetic per
    row: a third of the time."""
    years = np.repeat(np.arange(10_000, dtype=np.int64), 12)
    months = np.tile(np.arange(1, 13, dtype=np.int64), 10_000)
    first = _days_from_civil(years, months, np.ones_like(years))
    after = _days_from_civil(np.array([10_000]), np.array([1]), np.array([1]))
    return first, np.diff(first, append=after)


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)."""
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def refusals(batch: pa.Table) -> list[str | None]:
    """Per source row, the reason `transform_transactions` refuses it, or None: the same rules,
    for reconciliation to tell a refusal that still holds from one the source has fixed."""
    batch = decode_times(batch)
    amount = batch.column("amount")
    unscaled = _unscaled_int64(amount)
    cents = None if unscaled is None else _to_cents(unscaled, amount.type.scale)
    return [TRANSACTION_RULES[code - 1] if code else None
            for code in reject_codes(batch, unscaled, cents).tolist()]


# Why a transaction row is rejected; a row's code is 1 + the index of the first rule it fails.
# Each rule looks at the row alone: not at the clock, not at other tables. A user or merchant
# that has no row (yet) is not a reason: the fact loads with an inferred member (`inferred_*`).
TRANSACTION_RULES = (
    "transaction_id is empty",
    AMOUNT_NULL,
    AMOUNT_NEGATIVE,
    AMOUNT_TOO_LARGE,
    AMOUNT_TOO_PRECISE,
    UNKNOWN_STATUS,
    "transaction_time is not a valid date",
    "transaction_time is NULL",
    "transaction_time before 2000-01-01",
    "transaction_time more than a day after updated_at",
)
NO_KEY_RULE = 1  # the code of a row without an id: nothing to retract
# The extraction reads an impossible DATETIME ('0000-00-00', '2025-02-30') as NULL and its text
# in this column (source_mysql.TRANSACTIONS_SQL); batches without it have no such rows.
RAW_TIME = "transaction_time_raw"


def reject_codes(batch: pa.Table, unscaled: np.ndarray | None,
                 cents: np.ndarray | None) -> np.ndarray:
    """One uint8 per row: 0 when the row is good, else 1 + the index of its first failed rule.
    `unscaled` and `cents`: the amounts as `_unscaled_int64` and `_to_cents` give them."""
    amount = batch.column("amount")
    ttime = _naive_us(batch.column("transaction_time"))
    latest = pc.add(_naive_us(batch.column("updated_at")),
                    pa.scalar(FUTURE_TOLERANCE, pa.duration("us")))
    impossible = (_mask(batch.column(RAW_TIME).is_valid()) if RAW_TIME in batch.column_names
                  else np.zeros(batch.num_rows, dtype=bool))
    failing = [
        _null_or_empty(batch.column("transaction_id")),
        _mask(amount.is_null()),
        *_amount_failures(amount, unscaled, cents),
        ~_mask(pc.is_in(batch.column("status"), pa.array(KNOWN_STATUSES))),
        impossible,
        _mask(ttime.is_null()),
        _mask(pc.less(ttime, _naive_scalar(EARLIEST_TRANSACTION))),
        _mask(pc.greater(ttime, latest)),
    ]
    codes = np.zeros(batch.num_rows, dtype=np.uint8)
    if np.logical_or.reduce(failing).any():  # rare: skip the per-rule pass over good chunks
        for code in range(len(failing), 0, -1):  # last rule first: the first failing one wins
            codes[failing[code - 1]] = code
    return codes


def _amount_failures(amount: pa.ChunkedArray, unscaled: np.ndarray | None,
                     cents: np.ndarray | None) -> list[np.ndarray]:
    """Masks for: negative, over Decimal(18, 2), more than 2 decimals (NULLs pass all three)."""
    if unscaled is not None and cents is not None:  # the usual case, in integer arithmetic
        step = 10 ** max(amount.type.scale - 2, 0)
        return [unscaled < 0, cents > MAX_CENTS, (unscaled % step) != 0]
    return [
        _mask(pc.less(amount, pa.scalar(Decimal(0), amount.type))),
        _mask(pc.greater(amount, pa.scalar(MAX_AMOUNT, amount.type))),
        _mask(pc.not_equal(amount, pc.round(amount, 2))),
    ]


def _to_cents(unscaled: np.ndarray, scale: int) -> np.ndarray:
    """Unscaled decimals -> whole cents (floor; exact for the amounts the rules let through)."""
    if scale >= 2:
        return unscaled // 10 ** (scale - 2)
    return unscaled * 10 ** (2 - scale)  # scale <= 1: < 2**63 / 100 as unscaled fits int64


def _unscaled_int64(amount: pa.ChunkedArray) -> np.ndarray | None:
    """A decimal128 column's unscaled integers as int64 (NULL as 0), or None when some value
    does not fit 64 bits (or the type is not decimal128): then Arrow's decimal kernels decide."""
    if not pa.types.is_decimal128(amount.type) or amount.type.scale > 18:
        return None
    values = amount.combine_chunks() if isinstance(amount, pa.ChunkedArray) else amount
    words = np.frombuffer(values.buffers()[1], dtype="<i8", count=2 * len(values),
                          offset=16 * values.offset).reshape(-1, 2)
    low, high = words[:, 0], words[:, 1]
    fits = high == (low >> 63)  # the high word only carries the sign
    if values.null_count:
        valid = _mask(values.is_valid())
        fits |= ~valid
        low = np.where(valid, low, 0)
    return low if fits.all() else None


def _facts(clean: pa.Table, cents: np.ndarray | None) -> pa.Table:
    seconds = _epoch_seconds(clean.column("transaction_time"))
    if cents is None:
        amount = pc.cast(clean.column("amount"), WAREHOUSE_AMOUNT)
        categories = amount_categories(amount)
    else:
        amount, categories = _decimal_from_cents(cents), _categories_from_cents(cents)
    return pa.table({
        "transaction_id": clean.column("transaction_id"),
        "user_key": surrogate_keys(clean.column("user_id").to_numpy(zero_copy_only=False), "user"),
        "merchant_key": surrogate_keys(
            clean.column("merchant_id").to_numpy(zero_copy_only=False), "merchant"
        ),
        "amount": amount,
        "amount_category": categories,
        "status": clean.column("status"),
        "transaction_time": pa.array(seconds, pa.int64()).cast(UTC_SECONDS),
        "transaction_date": pa.array((seconds // 86_400).astype(np.int32), pa.date32()),
        "updated_at": _utc_seconds(clean.column("updated_at")),
        "_version": versions(clean.column("updated_at")),
        "_deleted": np.zeros(clean.num_rows, dtype=np.uint8),
    })


def _decimal_from_cents(cents: np.ndarray) -> pa.Array:
    """int64 cents -> Arrow decimal128(18, 2): the same 128-bit integers, sign-extended."""
    words = np.empty((len(cents), 2), dtype="<i8")
    words[:, 0], words[:, 1] = cents, cents >> 63
    return pa.Array.from_buffers(WAREHOUSE_AMOUNT, len(cents), [None, pa.py_buffer(words)])


def _categories_from_cents(cents: np.ndarray) -> pa.Array:
    return _CATEGORY_LABELS.take(np.searchsorted(_CATEGORY_BOUNDS_CENTS, cents, side="right"))


def _rejects(batch: pa.Table, codes: np.ndarray, rejected: np.ndarray, key: str) -> pa.Table:
    if not rejected.any():
        return pa.table({"record_key": pa.array([], pa.string()),
                         "_version": np.zeros(0, np.uint64),
                         "reason": pa.array([], pa.string()), "raw": pa.array([], pa.string())})
    bad_rows = batch.filter(pa.array(rejected))
    bad = bad_rows.to_pylist()
    return pa.table({
        "record_key": pa.array([str(row.get(key)) for row in bad], pa.string()),
        "_version": versions(pc.fill_null(bad_rows.column("updated_at"), 0)),
        "reason": pa.array([TRANSACTION_RULES[c - 1] for c in codes[rejected]], pa.string()),
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


def _epoch_seconds(values: pa.ChunkedArray) -> np.ndarray:
    """Source DATETIME (UTC wall clock) -> whole seconds since the epoch (floor), as int64."""
    micros = _naive_us(values).cast(pa.int64()).to_numpy(zero_copy_only=False)
    return micros // 1_000_000


def _utc_seconds(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Source DATETIME (UTC wall clock) -> UTC instants in whole seconds (ClickHouse DateTime)."""
    return pa.array(_epoch_seconds(values), pa.int64()).cast(UTC_SECONDS)
