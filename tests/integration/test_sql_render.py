"""`ewallet-etl sql`: a result is rendered the same, value for value, whichever engine holds the
warehouse (times as ISO text, not chDB's epoch integers). Both engines."""

from __future__ import annotations

import json

import pytest

from ewallet_etl.cli import render

pytestmark = pytest.mark.integration

QUERY = """
SELECT toDateTime('2025-01-10 08:15:00', 'UTC') AS utc,
       toDateTime('2025-01-10 08:15:00', 'Asia/Jakarta') AS jakarta,
       CAST(NULL AS Nullable(DateTime('UTC'))) AS missing,
       CAST(toDateTime('2025-01-11 00:00:01', 'UTC') AS Nullable(DateTime('UTC'))) AS maybe,
       toUInt32(1736496900) AS plain_number,
       toDate('2025-01-10') AS day,
       toDecimal64(50000, 2) AS amount
"""


def test_times_render_as_iso_text_on_every_engine(wh):
    names, rows = wh.query_with_names(QUERY)
    assert json.loads(render(names, rows, "json")) == [{
        "utc": "2025-01-10T08:15:00+00:00", "jakarta": "2025-01-10T08:15:00+07:00",
        "missing": None, "maybe": "2025-01-11T00:00:01+00:00", "plain_number": 1736496900,
        "day": "2025-01-10", "amount": "50000.00"}]
    assert render(names, rows, "csv").splitlines()[1] == (
        "2025-01-10T08:15:00+00:00,2025-01-10T08:15:00+07:00,,2025-01-11T00:00:01+00:00,"
        "1736496900,2025-01-10,50000.00")


def test_a_loaded_fact_s_time_renders_the_same_on_every_engine(settings, wh):
    from ewallet_etl.pipelines.batch import run_batch

    run_batch(settings)
    names, rows = wh.query_with_names(
        "SELECT transaction_id, transaction_time FROM analytics_dw.v_fact_sales "
        "WHERE transaction_id = 'TX1001'")
    assert render(names, rows, "csv").splitlines() == [
        "transaction_id,transaction_time", "TX1001,2025-01-10T08:15:00+00:00"]
