"""`etl_pipeline.py --reconcile cdc_transactions`: the CDC replica compared with the source,
per day and by id, as the facts are. Both ClickHouse engines."""

from __future__ import annotations

import io
import json

import pytest

from ewallet_etl.pipelines.reconcile import REPLICA, compare
from ewallet_etl.pipelines.replay import run_replay
from tests.helpers import mysql_exec, run_cli

pytestmark = pytest.mark.integration

SEED = [  # the source's seed, as change events
    ("TX1001", 1, 1, "50000.00", "SUCCESS", "2025-01-10T08:15:00Z"),
    ("TX1003", 2, 2, "150000.00", "SUCCESS", "2025-01-10T12:30:00Z"),
    ("TX1004", 2, 3, "10000.00", "FAILED", "2025-01-10T13:05:00Z"),
    ("TX1008", 2, 1, "65000.00", "SUCCESS", "2025-01-11T09:45:00Z"),
]


def event(tx, user, merchant, amount, status, when, version: str, op: str = "insert") -> str:
    return json.dumps({"op": op, "transaction_id": tx, "user_id": user, "merchant_id": merchant,
                       "amount": amount, "status": status, "transaction_time": when,
                       "_version": version})


def replay(settings, lines: list[str]) -> None:
    run_replay(settings, io.StringIO("\n".join(lines) + "\n"), "test")


def reconcile_exit(settings):
    return run_cli(settings, "--reconcile", "cdc_transactions")


def test_a_replica_equal_to_the_source_reconciles(settings):
    replay(settings, [event(*row, version="2025-01-12T00:00:00Z") for row in SEED])
    assert compare(settings, REPLICA).ok
    assert reconcile_exit(settings).returncode == 0


def test_the_replica_s_stale_status_extra_and_missing_rows_are_named(settings):
    lines = [event(*row, version="2025-01-12T00:00:00Z") for row in SEED[1:]]
    lines.append(event("TX9001", 3, 2, "20000.00", "SUCCESS", "2025-01-10T15:10:00Z",
                       version="2025-01-12T00:00:00Z"))  # a sale the source never had
    replay(settings, lines)
    mysql_exec(settings.mysql_database, "UPDATE transactions SET status = 'REFUNDED' "
                                        "WHERE transaction_id = 'TX1008'")
    result = compare(settings, REPLICA)
    assert [(str(d.day), d.missing, d.extra, d.changed) for d in result.mismatches] == [
        ("2025-01-10", ["TX1001"], ["TX9001"], []),
        ("2025-01-11", [], [], ["TX1008"]),
    ]
    done = reconcile_exit(settings)
    assert done.returncode == 4
    assert "MISMATCH on 2 day(s): 2025-01-10, 2025-01-11" in done.stderr
    assert "'TX9001'" in done.stderr and settings.mysql_password not in done.stderr
