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


# --- audit of issue 14: read-only, a source that is down, JSON for machines -------------------

def _fresh(settings):
    from tests.helpers import unique

    return replace(settings, warehouse=replace(settings.warehouse, database=unique("ewt_none")))


def _tables(settings, database):
    from ewallet_etl.warehouse import connect

    wh = connect(settings.warehouse)
    try:
        return wh.query("SELECT name FROM system.tables WHERE database = {d:String}",
                        {"d": database})
    finally:
        wh.close()


def test_status_and_sql_write_nothing_to_a_warehouse_without_the_schema(settings, monkeypatch,
                                                                       capsys):
    from ewallet_etl.cli import sql_main

    fresh = _fresh(settings)
    report = status(fresh)
    assert report.warehouse_error and "no schema" in report.warehouse_error
    assert "no schema" in report.to_text()
    for name, value in env_for(fresh).items():
        monkeypatch.setenv(name, value)
    assert status_main([]) == 0
    assert sql_main(["SELECT 1 AS one"]) == 0
    capsys.readouterr()
    assert _tables(settings, fresh.warehouse.database) == []


def test_status_without_the_source_still_shows_the_warehouse(settings, monkeypatch, capsys):
    run_batch(settings)
    down = replace(settings, mysql_port=1, max_retries=0)
    report = status(down)
    assert report.source_error and "MySQL" in report.source_error
    assert [(r["mode"], r["status"]) for r in report.last_runs] == [("full", "success")]
    assert report.batch["landed"] is not None and report.batch["checkpoint"] is None
    assert "source     unreachable: " in report.to_text()
    for name, value in {**env_for(down), "ETL_MAX_RETRIES": "0"}.items():
        monkeypatch.setenv(name, value)
    assert status_main([]) == 1  # shown, and said: the source could not be read
    assert "unreachable" in capsys.readouterr().out


def test_status_json_has_objects_and_zoned_times(settings, monkeypatch, capsys):
    run_batch(settings)
    for name, value in env_for(settings).items():
        monkeypatch.setenv(name, value)
    assert status_main(["--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    for state in document["states"]:
        assert isinstance(state["cursor"], dict)
        with pytest.raises(ValueError):
            json.loads(state["at"])  # prose, not JSON inside JSON
    for run in document["last_runs"]:
        assert run["started_at"].endswith("+00:00"), run["started_at"]
    assert document["batch"]["max_lag_seconds"] == settings.max_lag_seconds
    assert document["batch"]["fresh"] in (True, False)
