"""A refused change retracts what it replaces, on the CDC paths too (issue 12, cases 4 and 5):
a negative amount or an impossible date arriving from the binlog or a change-event file is
quarantined, the replica stops counting the key's older version, and the next good version
shows again. Real MariaDB; both ClickHouse engines.
"""

from __future__ import annotations

import io
import json
from decimal import Decimal

import pytest

from ewallet_etl.config import Settings
from ewallet_etl.pipelines.binlog import run_binlog
from ewallet_etl.pipelines.reconcile import REPLICA, compare
from ewallet_etl.pipelines.replay import run_replay
from tests.helpers import (
    as_decimal,
    mysql_admin,
    mysql_exec,
)
from tests.integration.test_binlog_cdc import query

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(stream_settings: Settings) -> Settings:
    """Short micro-batches; the warehouse re-opened on demand (conftest.stream_settings)."""
    return stream_settings


def replica_row(settings: Settings, tx: str) -> tuple | None:
    rows = query(settings, "SELECT status, amount FROM analytics_dw.v_cdc_transactions "
                           f"WHERE transaction_id = '{tx}'")  # tx: a constant of this file
    assert len(rows) <= 1
    return (rows[0][0], as_decimal(rows[0][1])) if rows else None


def quarantine_reasons(settings: Settings) -> list[str]:
    return sorted(reason for (reason,) in query(
        settings, "SELECT reason FROM analytics_dw.etl_quarantine FINAL"))


def test_binlog_a_negative_amount_retracts_the_replica_row_until_fixed(settings):
    db = settings.mysql_database
    run_binlog(settings)
    assert replica_row(settings, "TX1001") == ("SUCCESS", Decimal("50000.00"))

    mysql_exec(db, "UPDATE transactions SET amount = -5.00 WHERE transaction_id = 'TX1001'")
    report = run_binlog(settings)
    assert report.apply.rejected == 1
    assert replica_row(settings, "TX1001") is None
    assert any(reason.startswith("amount") for reason in quarantine_reasons(settings))
    result = compare(settings, REPLICA)
    assert result.ok and result.quarantined == ["TX1001"]

    mysql_exec(db, "UPDATE transactions SET amount = 60000.00 WHERE transaction_id = 'TX1001'")
    run_binlog(settings)
    assert replica_row(settings, "TX1001") == ("SUCCESS", Decimal("60000.00"))
    assert compare(settings, REPLICA).ok


def test_binlog_an_impossible_date_is_quarantined_and_the_rest_applied(settings):
    db = settings.mysql_database
    run_binlog(settings)
    conn = mysql_admin(db)
    with conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute("INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, "
                    "status, transaction_time) VALUES "
                    "('TXZ', 1, 1, 10.00, 'SUCCESS', '0000-00-00 00:00:00'), "
                    "('TXG', 1, 1, 20.00, 'SUCCESS', '2025-01-12 10:00:00')")
        cur.execute("UPDATE transactions SET transaction_time = '0000-00-00 00:00:00' "
                    "WHERE transaction_id = 'TX1003'")
        cur.execute("SET SESSION sql_mode = 'ALLOW_INVALID_DATES'")
        cur.execute("INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, "
                    "status, transaction_time) VALUES "
                    "('TXF', 1, 1, 30.00, 'SUCCESS', '2025-02-30 10:00:00')")
    conn.close()
    report = run_binlog(settings)
    assert report.apply.rejected == 3
    assert replica_row(settings, "TXG") == ("SUCCESS", Decimal("20.00"))
    assert replica_row(settings, "TXZ") is None
    assert replica_row(settings, "TX1003") is None  # its older, valid version is retracted
    result = compare(settings, REPLICA)
    assert replica_row(settings, "TXF") is None
    assert result.ok and sorted(result.quarantined) == ["TX1003", "TXF", "TXZ"]


def event(tx: str, amount: str, version: str, op: str = "update") -> str:
    return json.dumps({"op": op, "transaction_id": tx, "user_id": 1, "merchant_id": 1,
                       "amount": amount, "status": "SUCCESS",
                       "transaction_time": "2025-01-10T08:15:00Z", "_version": version})


def test_replay_a_refused_event_retracts_the_older_version_until_a_newer_one(settings):
    def replay(*lines: str):
        return run_replay(settings, io.StringIO("\n".join(lines) + "\n"), "test")

    replay(event("R1", "100.00", "2025-01-10T08:15:00Z", op="insert"))
    assert replica_row(settings, "R1") == ("SUCCESS", Decimal("100.00"))
    report = replay(event("R1", "-1.00", "2025-01-10T08:16:00Z"))
    assert report.rejected == 1
    assert replica_row(settings, "R1") is None
    # Replaying the older good event does not bring the row back: the refusal is newer.
    replay(event("R1", "100.00", "2025-01-10T08:15:00Z", op="insert"))
    assert replica_row(settings, "R1") is None
    replay(event("R1", "150.00", "2025-01-10T08:17:00Z"))
    assert replica_row(settings, "R1") == ("SUCCESS", Decimal("150.00"))


def test_binlog_runs_are_audited_like_every_other_run(settings):
    first = run_binlog(settings)
    mysql_exec(settings.mysql_database,
               "UPDATE transactions SET amount = -1.00 WHERE transaction_id = 'TX1003'")
    second = run_binlog(settings)
    rows = query(settings, "SELECT pipeline, mode, status, rows_read, rows_rejected, window_to "
                           "FROM analytics_dw.etl_runs")  # one second apart at most: by rejects
    assert sorted(rows, key=lambda row: row[4]) == [
        ("binlog:binlog_cdc", "bounded", "success", first.snapshot_rows + first.events, 0,
         str(first.saved)),
        ("binlog:binlog_cdc", "bounded", "completed_with_rejects", second.events, 1,
         str(second.saved)),
    ]
