"""The MongoDB flattening rules (core/documents.py), pure: one test per rule."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from bson.datetime_ms import DatetimeMS
from bson.decimal128 import Decimal128
from bson.int64 import Int64

from ewallet_etl.core.documents import BadDocument, flatten

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
