"""The transform's integer fast path for amounts (int64 cents from the decimal128 words) must
agree exactly with Arrow's decimal kernels, the path it replaces when every value fits 64 bits:
same rejects, same Decimal(18, 2) amounts, same categories."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ewallet_etl.core import transform

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _batch(amounts: list[Decimal | None], scale: int) -> pa.Table:
    n = len(amounts)
    return pa.table({
        "transaction_id": pa.array([f"T{i}" for i in range(n)]),
        "user_id": pa.array([1] * n, pa.uint32()),
        "merchant_id": pa.array([1] * n, pa.uint32()),
        "amount": pa.array(amounts, pa.decimal128(38, scale)),
        "status": pa.array(["SUCCESS"] * n),
        "transaction_time": pa.array([datetime(2025, 1, 10, 8, 0)] * n, pa.timestamp("us")),
        "updated_at": pa.array([datetime(2025, 1, 10, 8, 0)] * n, pa.timestamp("us")),
        "user_found": pa.array([1] * n, pa.int32()),
        "merchant_found": pa.array([1] * n, pa.int32()),
    })


def _arrow_path(batch: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The same transform with the fast path switched off."""
    original = transform._unscaled_int64
    transform._unscaled_int64 = lambda amount: None
    try:
        return transform.transform_transactions(batch)
    finally:
        transform._unscaled_int64 = original


amounts = st.one_of(
    st.none(),
    st.decimals(min_value=Decimal("-1e6"), max_value=Decimal("1e9"), places=4,
                allow_nan=False, allow_infinity=False),
    st.sampled_from([Decimal("49999.99"), Decimal("50000.00"), Decimal("99999.99"),
                     Decimal("100000.00"), Decimal("0.00"), Decimal("0.001"),
                     Decimal("-0.01"), Decimal("9999999999999999.99")]),
)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(amounts, min_size=1, max_size=40), scale=st.sampled_from([2, 4, 10]))
def test_fast_path_matches_arrow_decimal_kernels(values: list[Decimal | None], scale: int):
    quantum = Decimal(1).scaleb(-scale)
    values = [None if v is None else v.quantize(quantum) for v in values]
    batch = _batch(values, scale)
    facts, rejects = transform.transform_transactions(batch)
    want_facts, want_rejects = _arrow_path(batch)
    assert facts.equals(want_facts)
    assert rejects.column("reason").to_pylist() == want_rejects.column("reason").to_pylist()
    assert rejects.column("record_key").to_pylist() == want_rejects.column("record_key").to_pylist()


def test_fast_path_is_taken_for_scale_10_amounts_and_declined_beyond_64_bits():
    small = _batch([Decimal("50000.0000000000")], 10).column("amount")
    huge = _batch([Decimal("9999999999999999.99")], 10).column("amount")  # > 2**63 unscaled
    assert transform._unscaled_int64(small).tolist() == [500_000_000_000_000]
    assert transform._unscaled_int64(huge) is None


@pytest.mark.parametrize("amount, reason", [
    (Decimal("-0.0100000000"), "amount is negative"),
    (Decimal("1.0050000000"), "amount has more than 2 decimals"),
    (None, "amount is NULL"),
])
def test_fast_path_rejects_with_the_rule_s_reason(amount: Decimal | None, reason: str):
    facts, rejects = transform.transform_transactions(_batch([amount], 10))
    assert facts.num_rows == 0 and rejects.column("reason").to_pylist() == [reason]
