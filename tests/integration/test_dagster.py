"""The Dagster code location (issue 17, first part): its assets materialized in-process against
the real servers, on both engines, and asserted in the warehouse; its checks pass on an equal
warehouse and fail on a planted difference; a partitioned backfill reloads exactly its days."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from datetime import timezone
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest

from ewallet_etl.core import star
from ewallet_etl.orchestration import definitions as d
from ewallet_etl.pipelines.reconcile import compare
from ewallet_etl.warehouse import release_chdb
from tests.helpers import (
    INCREMENTAL_BATCH,
    ROOT,
    env_for,
    mysql_admin,
    mysql_exec,
    opened,
    run_sql_file,
    unique,
)

log = logging.getLogger(__name__)

pytestmark = pytest.mark.integration


@pytest.fixture
def env(settings, monkeypatch):
    """The run-time environment Dagster's runs read their settings from (EtlSettings)."""
    for name, value in env_for(settings).items():
        monkeypatch.setenv(name, value)
    return settings


def checks_of(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_the_batch_assets_load_the_warehouse_and_their_checks_mean_something(env):
    settings = env
    result = dg.materialize([d.mysql_batch, d.reconciled_to_the_cent, d.fresh_enough,
                             d.quarantine_is_empty], resources={"etl": d.EtlSettings()})
    assert result.success
    assert {m.asset_key.to_user_string()
            for m in result.asset_materializations_for_node("mysql_batch")} == {
        "dim_users", "dim_merchants", "fact_sales"}
    assert checks_of(result) == {"reconciled_to_the_cent": True, "fresh_enough": True,
                                 "quarantine_is_empty": True}
    assert compare(settings).ok
    with opened(settings.warehouse) as wh:  # a planted difference: a fact lost
        wh.insert("fact_sales", star.tombstones(["TX1003"], [1 << 62]))
    checked = dg.materialize([d.mysql_batch, d.reconciled_to_the_cent],
                             resources={"etl": d.EtlSettings()},
                             selection=dg.AssetSelection.checks(d.reconciled_to_the_cent),
                             raise_on_error=False)
    assert checks_of(checked) == {"reconciled_to_the_cent": False}
    assert not checked.success  # a blocking check: the run fails, visibly


def test_the_scheduled_job_runs_the_incremental_batch(env):
    settings = env
    assert d.incremental_batch.cron_schedule == "*/15 * * * *"
    job = d.defs.resolve_job_def(d.incremental_batch.job_name)
    result = job.execute_in_process(resources={"etl": d.EtlSettings()})
    assert result.success
    assert compare(settings).ok  # the scheduled run landed exactly the source's rows


def backfill_tags(first: str, last: str) -> dict[str, str]:
    """The tags of a single-run backfill of the partitions [first, last], as the UI sets them."""
    return {"dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last}


def day_totals(settings) -> dict[str, tuple[int, Decimal]]:
    with opened(settings.warehouse) as wh:
        rows = wh.query("SELECT toString(transaction_date), count(), toString(sum(amount)) "
                        "FROM analytics_dw.v_fact_sales GROUP BY transaction_date")
    return {day: (int(n), Decimal(total)) for day, n, total in rows}


def amounts(settings) -> dict[str, Decimal]:
    with opened(settings.warehouse) as wh:
        rows = wh.query("SELECT transaction_id, toString(amount) FROM analytics_dw.v_fact_sales")
    return {tx: Decimal(a) for tx, a in rows}


def test_a_backfill_of_a_date_range_reloads_exactly_those_days(env):
    settings = env
    run_sql_file(mysql_admin(settings.mysql_database), INCREMENTAL_BATCH)  # days 10 to 13
    assert dg.materialize([d.mysql_batch], resources={"etl": d.EtlSettings()}).success
    before = day_totals(settings)
    assert set(before) == {"2025-01-10", "2025-01-11", "2025-01-12", "2025-01-13"}
    # day A (2025-01-10) and day B (2025-01-11) both change in the source
    mysql_exec(settings.mysql_database,
               "UPDATE transactions SET amount = 55000.00 WHERE transaction_id = 'TX1001'")
    mysql_exec(settings.mysql_database,
               "UPDATE transactions SET amount = 70000.00 WHERE transaction_id = 'TX1008'")
    # a range of days holding A, not B: 2025-01-08 to 2025-01-10
    result = dg.materialize([d.fact_sales_by_day, d.partition_reconciled],
                            resources={"etl": d.EtlSettings()},
                            tags=backfill_tags("2025-01-08", "2025-01-10"))
    assert result.success
    done = result.asset_materializations_for_node("fact_sales_by_day")  # one per partition
    assert sorted(m.partition for m in done) == ["2025-01-08", "2025-01-09", "2025-01-10"]
    assert {m.metadata["days"].value for m in done} == {"[2025-01-08, 2025-01-11)"}  # one run
    # the check looked at the backfilled days only: B still differs, and it passed
    assert checks_of(result) == {"partition_reconciled": True}
    now = amounts(settings)
    assert now["TX1001"] == Decimal("55000.00")  # A's change landed
    assert now["TX1008"] == Decimal("65000.00")  # B's did not: outside the range
    after = day_totals(settings)
    assert after["2025-01-10"] == (3, before["2025-01-10"][1] + Decimal("5000.00"))
    assert {k: v for k, v in after.items() if k != "2025-01-10"} == {
        k: v for k, v in before.items() if k != "2025-01-10"}
    # the same check over B's day goes red: it reconciles what the run covers
    checked = dg.materialize([d.fact_sales_by_day, d.partition_reconciled],
                             resources={"etl": d.EtlSettings()},
                             selection=dg.AssetSelection.checks(d.partition_reconciled),
                             tags=backfill_tags("2025-01-11", "2025-01-11"),
                             raise_on_error=False)
    assert checks_of(checked) == {"partition_reconciled": False}
    assert not checked.success  # blocking: the backfill's run fails, visibly


def test_a_quarantined_row_turns_quarantine_is_empty_red(env):
    settings = env
    mysql_exec(settings.mysql_database,  # refused by the batch: a negative amount
               "INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, status, "
               "transaction_time) VALUES ('TXBAD', 1, 1, -5.00, 'SUCCESS', '2025-01-12 10:00:00')")
    result = dg.materialize([d.mysql_batch, d.reconciled_to_the_cent, d.quarantine_is_empty],
                            resources={"etl": d.EtlSettings()})
    # a warning: visible, and the refused row is explained, so the facts still reconcile
    assert result.success
    assert checks_of(result) == {"reconciled_to_the_cent": True, "quarantine_is_empty": False}
    (evaluation,) = [e for e in result.get_asset_check_evaluations()
                     if e.check_name == "quarantine_is_empty"]
    assert evaluation.severity == dg.AssetCheckSeverity.WARN


def test_a_lag_above_the_limit_turns_fresh_enough_red(env, monkeypatch):
    monkeypatch.setenv("ETL_MAX_LAG_SECONDS", "1")
    assert dg.materialize([d.mysql_batch], resources={"etl": d.EtlSettings()}).success
    time.sleep(2.5)  # the source's clock moves on, no batch runs: the lag passes 1 s
    result = dg.materialize([d.mysql_batch, d.fresh_enough], resources={"etl": d.EtlSettings()},
                            selection=dg.AssetSelection.checks(d.fresh_enough))
    assert checks_of(result) == {"fresh_enough": False}
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.metadata["limit_seconds"].value == 1
    assert evaluation.metadata["lag_seconds"].value > 1


def test_a_red_reconciliation_stops_the_report_from_being_built(env):
    settings = env
    assert dg.materialize([d.mysql_batch], resources={"etl": d.EtlSettings()}).success
    with opened(settings.warehouse) as wh:  # a planted difference: a fact lost
        wh.insert("fact_sales", star.tombstones(["TX1003"], [1 << 62]))
    result = dg.materialize([d.mysql_batch, d.reconciled_to_the_cent, d.daily_volume_report],
                            resources={"etl": d.EtlSettings()}, raise_on_error=False)
    assert checks_of(result) == {"reconciled_to_the_cent": False}
    assert not result.success
    assert {m.asset_key.to_user_string()
            for m in result.asset_materializations_for_node("mysql_batch")} == {
        "dim_users", "dim_merchants", "fact_sales"}
    assert result.asset_materializations_for_node("daily_volume_report") == []
    started = {e.step_key for e in result.all_events if e.is_step_start}
    assert "mysql_batch" in started and "daily_volume_report" not in started


# --- the CDC and MongoDB assets, against the real servers ---------------------------------------

def replica(settings) -> dict[str, tuple[Decimal, str]]:
    with opened(settings.warehouse) as wh:
        rows = wh.query("SELECT transaction_id, toString(amount), status "
                        "FROM analytics_dw.v_cdc_transactions")
    return {tx: (Decimal(a), st) for tx, a, st in rows}


def source_rows(settings) -> dict[str, tuple[Decimal, str]]:
    rows = mysql_exec(settings.mysql_database,
                      "SELECT transaction_id, amount, status FROM transactions")
    return {tx: (Decimal(a), st) for tx, a, st in rows}


def test_the_binlog_asset_snapshots_then_follows_the_source(env):
    settings = env
    first = dg.materialize([d.cdc_replicas], resources={"etl": d.EtlSettings()})
    assert first.success
    assert replica(settings) == source_rows(settings) and len(replica(settings)) == 4
    mysql_exec(settings.mysql_database,
               "INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, status, "
               "transaction_time) VALUES ('TX2001', 2, 3, 12345.67, 'SUCCESS', "
               "'2025-01-14 08:00:00')")
    mysql_exec(settings.mysql_database,
               "UPDATE transactions SET status = 'REFUNDED' WHERE transaction_id = 'TX1003'")
    second = dg.materialize([d.cdc_replicas], resources={"etl": d.EtlSettings()})
    assert second.success
    (shown,) = second.asset_materializations_for_node("cdc_replicas")
    assert shown.metadata["events"].value >= 2
    assert replica(settings) == source_rows(settings)
    assert replica(settings)["TX2001"] == (Decimal("12345.67"), "SUCCESS")
    assert amounts(settings)["TX2001"] == Decimal("12345.67")  # the star schema too
    assert compare(settings).ok


@pytest.fixture
def mongo_env(env, monkeypatch):
    """A MongoDB database of its own holding the three demo documents; the runs read it."""
    from pymongo import MongoClient

    sys.path.insert(0, str(ROOT / "seed"))
    import mongodb_seed

    name = unique("ewt_mg")
    client: MongoClient = MongoClient(env.mongodb_url, serverSelectionTimeoutMS=5000,
                                      tz_aware=True)
    now = client.admin.command("hello")["localTime"].replace(tzinfo=timezone.utc)
    client[name]["transactions"].insert_many(mongodb_seed.demo_documents(now))
    monkeypatch.setenv("MONGODB_URL", env.mongodb_url)
    monkeypatch.setenv("MONGODB_DATABASE", name)
    yield replace(env, mongodb_database=name)
    client.drop_database(name)
    client.close()


def test_the_mongodb_asset_loads_the_documents_into_the_star_schema(mongo_env):
    settings = mongo_env
    result = dg.materialize([d.mongodb_facts], resources={"etl": d.EtlSettings()})
    assert result.success
    (shown,) = result.asset_materializations_for_node("mongodb_facts")
    assert (shown.metadata["documents"].value, shown.metadata["loaded"].value,
            shown.metadata["rejected"].value) == (3, 3, 0)
    with opened(settings.warehouse) as wh:
        loaded = wh.query("SELECT transaction_id, toString(amount), status, "
                          "toString(transaction_time) FROM (SELECT * FROM "
                          "analytics_dw.fact_sales FINAL) WHERE _deleted = 0 "
                          "AND source = 'mongodb' ORDER BY transaction_id")
    assert [(tx, Decimal(a), st, t) for tx, a, st, t in loaded] == [
        ("MG2001", Decimal("125000.00"), "SUCCESS", "2025-01-10 14:00:00"),
        ("MG2002", Decimal("45000.50"), "SUCCESS", "2025-01-12 07:30:00"),
        ("MG2003", Decimal("30000.00"), "FAILED", "2025-01-11 09:00:00")]


# --- schedule, sensor and the instance's settings -----------------------------------------------

def test_the_schedule_and_the_sensor_run_by_default():
    assert d.incremental_batch.default_status == dg.DefaultScheduleStatus.RUNNING
    assert d.binlog_cdc.default_status == dg.DefaultSensorStatus.RUNNING


@pytest.mark.parametrize("status, wanted", [
    (None, dg.RunRequest),
    (dg.DagsterRunStatus.NOT_STARTED, dg.SkipReason),  # (QUEUED needs a code location's origin)
    (dg.DagsterRunStatus.STARTING, dg.SkipReason),
    (dg.DagsterRunStatus.STARTED, dg.SkipReason),
    (dg.DagsterRunStatus.CANCELING, dg.SkipReason),
    (dg.DagsterRunStatus.SUCCESS, dg.RunRequest),
    (dg.DagsterRunStatus.FAILURE, dg.RunRequest),
])
def test_the_binlog_sensor_asks_for_no_run_while_one_is_in_progress(status, wanted):
    with dg.instance_for_test() as instance:
        if status is not None:
            instance.add_run(dg.DagsterRun(job_name="binlog_cdc_job", status=status))
        instance.add_run(dg.DagsterRun(job_name="incremental_batch_job",  # not ours: ignored
                                       status=dg.DagsterRunStatus.STARTED))
        answer = d.binlog_cdc(dg.build_sensor_context(instance=instance))
        assert isinstance(answer, wanted), answer


DAGSTER_YAML = ROOT / "ewallet_etl" / "orchestration" / "dagster.yaml"


def test_the_instance_settings_queue_the_warehouse_runs_one_at_a_time(tmp_path):
    shutil.copy(DAGSTER_YAML, tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        config = instance.get_concurrency_config()
        (key,) = d.WAREHOUSE_TAG
        assert {"key": key, "limit": 1} in config.run_queue_config.tag_concurrency_limits
        assert config.pool_config.default_pool_limit == 1
        assert config.pool_config.pool_granularity.value == "run"
        assert not instance.telemetry_enabled and not instance.nux_enabled
    finally:
        instance.dispose()
    # every job's runs carry the tag, every asset is in the pool
    for job in ("incremental_batch_job", "binlog_cdc_job", "fact_sales_by_day_job"):
        assert d.defs.resolve_job_def(job).tags.items() >= d.WAREHOUSE_TAG.items(), job
    graph = d.defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        assert graph.get(key).pools == {d.POOL}, key


def test_the_code_location_validates_from_the_repository_root():
    proc = subprocess.run([str(ROOT / ".venv/bin/dagster"), "definitions", "validate"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "All code locations passed validation" in proc.stderr + proc.stdout


def test_the_daily_volume_report_draws_its_chart_in_dagster_and_from_the_command(env, tmp_path):
    settings = env
    result = dg.materialize([d.mysql_batch, d.daily_volume_report],
                            resources={"etl": d.EtlSettings()},
                            selection=dg.AssetSelection.assets("dim_users", "dim_merchants",
                                                               "fact_sales",
                                                               "daily_volume_report"))
    assert result.success
    (shown,) = result.asset_materializations_for_node("daily_volume_report")
    assert shown.metadata["chart"].value.startswith("![daily volume](data:image/png;base64,")
    assert "| 2025-01-10 | High | 1 | 150000.00 | ok |" in shown.metadata["table"].value
    assert shown.metadata["days_differing"].value == 0
    release_chdb()
    out = tmp_path / "volume.png"
    proc = subprocess.run([str(ROOT / ".venv/bin/ewallet-etl"), "report", "--out", str(out)],
                          cwd=tmp_path, env=env_for(settings), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "2025-01-11  Medium    1      65000.00" in proc.stdout


# --- the UI, as a person uses it ----------------------------------------------------------------

# Kept after the run (not in tmp_path) so a person can look at them; git ignores .local/.
ARTIFACTS = ROOT / ".local" / "test-artifacts"
ASSETS = ("dim_users", "dim_merchants", "fact_sales", "fact_sales_by_day", "cdc_replicas",
          "mongodb_facts", "daily_volume_report")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browse(url: str, screenshot: Path | None = None) -> str:
    """What headless Chromium shows at `url` once the page's scripts ran: its DOM as text."""
    base = [shutil.which("chromium") or "chromium", "--headless=new", "--no-sandbox",
            "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900",
            "--virtual-time-budget=20000"]
    if screenshot is not None:
        subprocess.run([*base, f"--screenshot={screenshot}", url], capture_output=True,
                       timeout=120, check=True)
        log.info("screenshot of %s: %s", url, screenshot)
    return subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True,
                          timeout=120, check=True).stdout


def wait_for(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_the_ui_shows_the_asset_graph_and_the_last_run(env, tmp_path):
    settings = env
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DAGSTER_YAML, home / "dagster.yaml")  # as dagster.sh does: no nux pop-up
    instance = dg.DagsterInstance.from_config(str(home))
    assert not instance.nux_enabled
    run = dg.materialize([d.mysql_batch], resources={"etl": d.EtlSettings()}, instance=instance)
    assert run.success
    instance.dispose()
    port = free_port()
    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env={**env_for(settings), "DAGSTER_HOME": str(home)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shots = {"catalog": ARTIFACTS / "dagster_assets.png",
             "graph": ARTIFACTS / "dagster_asset_graph.png", "run": ARTIFACTS / "dagster_run.png"}
    try:
        wait_for(f"http://127.0.0.1:{port}/server_info")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for shot in shots.values():
            shot.unlink(missing_ok=True)
        catalog = browse(f"http://127.0.0.1:{port}/assets", shots["catalog"])
        for asset in ASSETS:
            assert asset in catalog, asset
        # the global lineage: one box per group (collapsed), joined by their dependencies
        graph = browse(f"http://127.0.0.1:{port}/asset-groups", shots["graph"])
        assert "Global asset lineage" in graph
        for group in ("mysql", "cdc", "mongodb", "reports"):
            assert f">{group}<" in graph, group
        page = browse(f"http://127.0.0.1:{port}/runs/{run.run_id}", shots["run"])
        assert "mysql_batch" in page and "Success" in page
    finally:
        server.terminate()
        server.wait(60)
    for shot in shots.values():  # a picture, not a blank page
        assert shot.stat().st_size > 10_000, shot
