"""The Dagster code location (issue 17, first part): its assets materialized in-process against
the real servers, on both engines, and asserted in the warehouse; its checks pass on an equal
warehouse and fail on a planted difference; a partitioned backfill reloads exactly its days."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest

from ewallet_etl.core import star
from ewallet_etl.orchestration import definitions as d
from ewallet_etl.pipelines.reconcile import compare
from ewallet_etl.warehouse import release_chdb
from tests.helpers import ROOT, env_for, opened

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


def test_a_backfill_of_a_date_range_reloads_exactly_those_days(env):
    settings = env
    result = dg.materialize(
        [d.fact_sales_by_day], resources={"etl": d.EtlSettings()},
        tags={"dagster/asset_partition_range_start": "2025-01-10",
              "dagster/asset_partition_range_end": "2025-01-10"})
    assert result.success
    with opened(settings.warehouse) as wh:
        loaded = wh.query("SELECT transaction_id, toString(amount) FROM analytics_dw.v_fact_sales "
                          "ORDER BY transaction_id")
    # the seed's 2025-01-10 transactions only: TX1008 (2025-01-11) is not in the range
    assert [(tx, Decimal(a)) for tx, a in loaded] == [
        ("TX1001", Decimal("50000.00")), ("TX1003", Decimal("150000.00")),
        ("TX1004", Decimal("10000.00"))]


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

ARTIFACTS = ROOT / ".local" / "test-artifacts"


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
    return subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True,
                          timeout=120, check=True).stdout


def test_the_ui_shows_the_asset_graph_and_the_last_run(env, tmp_path):
    settings = env
    home = tmp_path / "dagster_home"
    home.mkdir()
    instance = dg.DagsterInstance.from_config(str(home))
    run = dg.materialize([d.mysql_batch], resources={"etl": d.EtlSettings()}, instance=instance)
    assert run.success
    instance.dispose()
    port = free_port()
    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env={**env_for(settings), "DAGSTER_HOME": str(home)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        graph = browse(f"http://127.0.0.1:{port}/assets", ARTIFACTS / "dagster_assets.png")
        for asset in ("dim_users", "dim_merchants", "fact_sales", "fact_sales_by_day",
                      "cdc_replicas", "mongodb_facts", "daily_volume_report"):
            assert asset in graph, asset
        page = browse(f"http://127.0.0.1:{port}/runs/{run.run_id}",
                      ARTIFACTS / "dagster_run.png")
        assert "mysql_batch" in page and "Success" in page
    finally:
        server.terminate()
        server.wait(60)
    assert (ARTIFACTS / "dagster_assets.png").stat().st_size > 10_000  # a picture, not a blank
