"""The MongoDB flattening rules (core/documents.py), pure: one test per rule."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from bson.datetime_ms import DatetimeMS
from bson.decimal128 import Decimal128
from bson.int64 import Int64

from ewallet_etl.core.documents import BadDocument, flatten, refused_version

AT = datetime(2025, 3, 1, 9, 0, 0, 120000, tzinfo=timezone.utc)
DOC = {"transaction_id": "M1", "user": {"id": 1, "name": "Andi", "email": "a@x", "city": "J"},
       "merchant": {"id": Int64(2), "name": "Toko", "category": "E-commerce"},
       "amount": Decimal128("50000.00"), "currency": "IDR", "status": "SUCCESS",
       "transaction_time": datetime(2025, 1, 10, 8, 15, tzinfo=timezone.utc), "updated_at": AT,
       "items": [{"sku": "x"}], "device": {"deep": {"er": {"est": 1}}}}


def test_a_good_document_flattens_exactly():
    flat = flatten(DOC)
    assert (flat.transaction_id, flat.user_id, flat.merchant_id, flat.amount, flat.status) == (
        "M1", 1, 2, Decimal("50000.00"), "SUCCESS")
    assert flat.version == 1_740_819_600_120_000  # updated_at in µs
    assert flat.user == ("Andi", "a@x", "J") and flat.merchant == ("Toko", "E-commerce", "")


@pytest.mark.parametrize("amount, value", [
    (Decimal128("0.01"), Decimal("0.01")), ("45000.50", Decimal("45000.50")), (30000, 30000),
    (49999.99, Decimal("49999.99")), (1234567890123.45, Decimal("1234567890123.45"))])
def test_amounts_are_exact_whatever_their_bson_type(amount, value):
    assert flatten({**DOC, "amount": amount}).amount == value


@pytest.mark.parametrize("change, reason", [
    ({"transaction_id": None}, "missing transaction_id"),
    ({"transaction_id": 7}, "transaction_id is not a string of 1-64 printable characters"),
    ({"user": None}, "missing user"),
    ({"user": "Andi"}, "user is not an object"),
    ({"user": {"id": True}}, "user.id is not an integer"),
    ({"merchant": {"id": -1}}, "merchant.id out of range (0..4294967295)"),
    ({"amount": None}, "missing amount"),
    ({"amount": 0.1 + 0.2}, "amount is a double with more than 15 significant digits: not "
                            "exact (store a Decimal128 or a decimal text)"),
    ({"amount": Decimal128("Infinity")}, "amount is not a finite number"),
    ({"amount": "1e5"}, "amount is not a decimal number"),
    ({"currency": "USD"}, "currency is not IDR"),
    ({"status": 3}, "status is not a string"),
    ({"transaction_time": DatetimeMS(2**62)}, "transaction_time is out of range"),
    ({"transaction_time": "yesterday"}, "transaction_time is not a date"),
    ({"updated_at": None}, "missing updated_at"),
    ({"user": {"id": 1, "name": "A\udcff"}}, "user.name is not valid UTF-8"),
    ({"user": {"id": 1, "city": ["J"]}}, "user.city is not a string"),
])
def test_each_rule_refuses_with_its_reason(change, reason):
    with pytest.raises(BadDocument) as refused:
        flatten({**DOC, **change})
    assert str(refused.value) == reason


# --- issue 16 audit: 64-bit integers, dates the window and the warehouse can hold ----------

@pytest.mark.parametrize("amount, value", [
    (Int64(5000), Decimal(5000)), (Int64(3_000_000_000), Decimal(3_000_000_000))])
def test_a_bson_int64_amount_is_an_integer(amount, value):
    assert flatten({**DOC, "amount": amount}).amount == value


def test_a_bool_amount_is_not_a_number():
    with pytest.raises(BadDocument, match="amount is not a decimal number"):
        flatten({**DOC, "amount": True})


LAST = datetime(2106, 2, 7, 6, 28, 15, tzinfo=timezone.utc)  # ClickHouse DateTime's last second


@pytest.mark.parametrize("change, reason", [
    ({"updated_at": "2025-03-01T09:00:00+00:00"},
     "updated_at is not a BSON date (an incremental window cannot see a text)"),
    ({"updated_at": 1_740_819_600}, "updated_at is not a BSON date (an incremental window "
                                    "cannot see a text)"),
    ({"transaction_time": LAST + timedelta(seconds=1), "updated_at": LAST},
     "transaction_time outside DateTime range (1970-01-01..2106-02-07)"),
    ({"transaction_time": datetime(2200, 1, 1, tzinfo=timezone.utc)},
     "transaction_time outside DateTime range (1970-01-01..2106-02-07)"),
    ({"updated_at": LAST + timedelta(seconds=1)},
     "updated_at outside DateTime range (1970-01-01..2106-02-07)"),
    ({"updated_at": datetime(9999, 12, 31, tzinfo=timezone.utc)},
     "updated_at outside DateTime range (1970-01-01..2106-02-07)"),
    ({"updated_at": datetime(1969, 12, 31, tzinfo=timezone.utc)},
     "updated_at outside DateTime range (1970-01-01..2106-02-07)"),
])
def test_dates_must_be_bson_dates_within_clickhouse_datetime(change, reason):
    with pytest.raises(BadDocument) as refused:
        flatten({**DOC, **change})
    assert str(refused.value) == reason


def test_the_last_datetime_second_is_accepted():
    flat = flatten({**DOC, "transaction_time": LAST, "updated_at": LAST})
    assert flat.transaction_time == LAST


def test_an_iso_text_transaction_time_is_still_accepted():
    """Business data, not the window's key: a text with an offset is a time like any other."""
    flat = flatten({**DOC, "transaction_time": "2025-01-10T08:15:00+07:00"})
    assert flat.transaction_time == datetime(2025, 1, 10, 1, 15, tzinfo=timezone.utc)


def test_updated_at_after_the_latest_acceptable_time_is_in_the_future():
    latest = AT + timedelta(minutes=5)
    assert flatten(DOC, latest).version == 1_740_819_600_120_000
    with pytest.raises(BadDocument, match="^updated_at is in the future$"):
        flatten({**DOC, "updated_at": latest + timedelta(microseconds=1000)}, latest)


def test_cyclic_looking_structures_are_ignored():
    """BSON cannot hold a cycle, but a document can hold a copy of itself, or a reference to
    its own _id: neither is part of the star schema."""
    inner = dict(DOC)
    doc = {**DOC, "_id": "x1", "device": {"self": inner, "ref": {"$ref": "transactions",
                                                                 "$id": "x1"}},
           "items": [inner, [inner, {"again": inner}]]}
    assert flatten(doc) == flatten(DOC)


@pytest.mark.parametrize("updated_at, version", [
    (AT, 1_740_819_600_120_000),  # a good date: its own version
    (None, 7), ("2025-03-01T09:00:00+00:00", 7),  # none to use: the run's clock
    (datetime(2200, 1, 1, tzinfo=timezone.utc), 7),  # in the future: the run's clock
])
def test_the_version_of_a_refused_document(updated_at, version):
    latest = AT + timedelta(minutes=5)
    assert refused_version({**DOC, "updated_at": updated_at}, latest, 7) == version
