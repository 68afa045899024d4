"""`ewallet-etl status`: what it says is what the source and the warehouse hold. Both engines."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from ewallet_etl.cli import status_main
from ewallet_etl.pipelines.batch import run_batch
from ewallet_etl.pipelines.status import status
from tests.helpers import checkpoint_of, env_for, mysql_exec

pytestmark = pytest.mark.integration


def test_status_before_and_after_runs_says_where_the_batch_stands(settings, monkeypatch, capsys):
    before = status(settings)
    assert before.batch["checkpoint"] is None and before.batch["next_run"] == "full load"
    assert before.last_runs == [] and before.quarantined == {}

    run_batch(settings)
    mysql_exec(settings.mysql_database,
               "INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, status, "
               "transaction_time) VALUES ('TXBAD', 1, 1, -1.00, 'SUCCESS', '2025-01-12 10:00')")
    run_batch(settings)
    after = status(settings)
    saved = checkpoint_of(settings).isoformat()
    assert after.batch["checkpoint"].startswith(saved) and after.batch["landed"] == \
        after.batch["checkpoint"]
    assert after.batch["next_run"].startswith("incremental from ")
    assert after.batch["lag_seconds"] >= 0
    assert [(r["mode"], r["status"]) for r in after.last_runs] == [
        ("incremental", "completed_with_rejects"), ("full", "success")]
    assert after.quarantined == {"transactions": 1}
    assert after.binlog_end and ":" in after.binlog_end  # the local stack logs binlogs
    assert [(st["pipeline"], st["kind"]) for st in after.states] == [
        (settings.pipeline_name, "batch")]
    assert after.states[0]["at"] == f"watermark {after.batch['landed']}"
    assert f"state      {settings.pipeline_name} (batch): watermark" in after.to_text()

    for name, value in env_for(settings).items():
        monkeypatch.setenv(name, value)
    assert status_main(["--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["batch"]["checkpoint"] == after.batch["checkpoint"]
    assert document["quarantined"] == {"transactions": 1}


def test_a_second_warehouse_is_shown_as_needing_a_full_load(settings, wh):
    run_batch(settings)
    other = replace(settings, warehouse=replace(settings.warehouse,
                                                database=settings.warehouse.database + "_b"))
    try:
        assert status(other).batch["next_run"] == "full load"
    finally:
        from ewallet_etl.warehouse import connect

        extra = connect(other.warehouse)
        extra.execute("DROP DATABASE IF EXISTS analytics_dw")
        extra.close()
