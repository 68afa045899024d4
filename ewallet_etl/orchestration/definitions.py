"""The Dagster code location: the pipelines as assets, on a schedule, checked.

Nothing here has logic of its own: every asset calls the function the CLI runs
(`run_batch`, `run_backfill`, `run_binlog`, `run_mongo`), every check the function the CLI's
`--reconcile` and `status` use. The settings are read when a run starts (`EtlSettings`), never
at import, so `dagster definitions validate` works anywhere.

    scripts/dagster.sh               # one command: .venv, the local stack, `dagster dev`
    dagster dev                      # from the repository root ([tool.dagster] in pyproject.toml)
    dagster definitions validate

Assets (the warehouse's tables, by what fills them):
* `dim_users`, `dim_merchants`, `fact_sales`: the MySQL batch, one run for the three
  (incremental; the schedule `incremental_batch` runs it every 15 minutes).
* `fact_sales_by_day`: the same facts by day of transaction_time, daily partitions from
  FIRST_DAY: a backfill of a range reloads exactly those days, in one run (`run_backfill`),
  then the check `partition_reconciled` compares just those days.
* `cdc_replicas`: the binlog CDC, a bounded run (the sensor `binlog_cdc` asks for one every
  minute unless one is still in progress, so the stream's health shows as runs).
* `mongodb_facts`: the MongoDB documents.
* `daily_volume_report`: the chart of sales per day and category (`ewallet-etl report`).
Checks: `reconciled_to_the_cent` (fact_sales vs the source, per day), `quarantine_is_empty`
(a warning), `fresh_enough` (the batch's lag against ETL_MAX_LAG_SECONDS, default 1 hour),
`partition_reconciled` (fact_sales_by_day: the partition's days only).

The schedule and the sensor start RUNNING, so a fresh instance (docker compose, dagster.sh)
runs them without a click. Every asset is in the pool `ewallet_warehouse` and every job carries
the tag WAREHOUSE_TAG: with this folder's dagster.yaml (a queue, a limit of 1 on both), runs that
touch the warehouse never overlap, which embedded chDB (one process per folder) requires.
"""

# No `from __future__ import annotations`: Dagster reads the context parameters' types.
import warnings
from datetime import date, timedelta
from typing import Any, Iterator

import dagster as dg

from ewallet_etl.config import Settings
from ewallet_etl.core.transform import EARLIEST_TRANSACTION


class EtlSettings(dg.ConfigurableResource):
    """The pipeline's settings, read from the environment (and .env) when a run starts."""

    def settings(self) -> Settings:
        """Read now, as the CLI does: the environment over .env (or ETL_ENV_FILE)."""
        return Settings.from_env()


# One queue for the warehouse: the pool (every asset, however a run is launched) and the tag
# (every job's runs) are both limited to 1 in dagster.yaml.
POOL = "ewallet_warehouse"
WAREHOUSE_TAG = {"ewallet_etl/warehouse": "settings"}
# The first day a transaction can load (the batch refuses earlier transaction_time), so every
# loadable day has a partition. Not a setting: partitions are fixed at import, settings are read
# when a run starts.
FIRST_DAY = EARLIEST_TRANSACTION.date().isoformat()
IN_PROGRESS = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
               dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
               dg.DagsterRunStatus.CANCELING]


@dg.multi_asset(
    pool=POOL,
    specs=[dg.AssetSpec("dim_users", group_name="mysql"),
           dg.AssetSpec("dim_merchants", group_name="mysql"),
           dg.AssetSpec("fact_sales", group_name="mysql", deps=["dim_users", "dim_merchants"])],
    description="The MySQL batch ELT, incremental from the checkpoint (etl_pipeline.py).",
)
def mysql_batch(context: dg.AssetExecutionContext,
                etl: EtlSettings) -> Iterator[dg.MaterializeResult]:
    from ewallet_etl.pipelines.batch import run_batch

    report = run_batch(etl.settings())
    context.log.info(report.summary())
    meta: dict[str, Any] = {"rows_read": report.rows_read, "rows_loaded": report.rows_loaded,
            "rejected": report.rows_rejected, "window": str(report.window),
            "status": report.status}
    for key in ("dim_users", "dim_merchants", "fact_sales"):
        yield dg.MaterializeResult(asset_key=key, metadata=meta)


DAYS = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, end_offset=1)


def _fact_sales_by_day(context: dg.AssetExecutionContext,
                       etl: EtlSettings) -> dg.MaterializeResult:
    from ewallet_etl.pipelines.batch import run_backfill

    window = context.partition_time_window
    since, until = window.start.date(), window.end.date()
    report = run_backfill(etl.settings(), since, until)
    context.log.info(report.summary())
    return dg.MaterializeResult(metadata={"days": f"[{since}, {until})",
                                          "rows_loaded": report.rows_loaded,
                                          "status": report.status})


with warnings.catch_warnings():  # backfill_policy is "beta" in Dagster 1.13: known, wanted
    warnings.simplefilter("ignore")
    fact_sales_by_day = dg.asset(
        name="fact_sales_by_day", partitions_def=DAYS, pool=POOL,
        backfill_policy=dg.BackfillPolicy.single_run(), group_name="mysql",
        deps=["dim_users", "dim_merchants"],
        description="fact_sales by day of transaction_time: a backfill reloads exactly the "
        "chosen days (etl_pipeline.py --since/--until), the checkpoint untouched.",
    )(_fact_sales_by_day)


@dg.asset(group_name="cdc", pool=POOL,
          description="The binlog CDC, a bounded run: the cdc_* replicas and the star schema "
          "up to the binlog's end at start (cdc-stream.py --source binlog).")
def cdc_replicas(context: dg.AssetExecutionContext, etl: EtlSettings) -> dg.MaterializeResult:
    from ewallet_etl.pipelines.binlog import run_binlog

    report = run_binlog(etl.settings())
    context.log.info(report.summary())
    return dg.MaterializeResult(metadata={"events": report.events, "position": str(report.saved),
                                          "max_lag_s": report.max_lag,
                                          "rejected": report.apply.rejected})


@dg.asset(group_name="mongodb", pool=POOL, deps=["dim_users", "dim_merchants"],
          description="The MongoDB wallet documents into the star schema "
          "(etl_pipeline.py --source mongodb).")
def mongodb_facts(context: dg.AssetExecutionContext, etl: EtlSettings) -> dg.MaterializeResult:
    from ewallet_etl.pipelines.mongo import run_mongo

    report = run_mongo(etl.settings())
    context.log.info(report.summary())
    return dg.MaterializeResult(metadata={"documents": report.documents,
                                          "loaded": report.loaded, "rejected": report.rejected})


@dg.asset(group_name="reports", pool=POOL, deps=["fact_sales", "mongodb_facts"],
          description="Sales per day and amount category, with each day's reconciliation "
          "status, as a PNG chart (the same as `ewallet-etl report`).")
def daily_volume_report(context: dg.AssetExecutionContext,
                        etl: EtlSettings) -> dg.MaterializeResult:
    import base64
    from pathlib import Path

    from ewallet_etl.pipelines.report import daily_volume, write_chart

    report = daily_volume(etl.settings())
    path = write_chart(report, Path(context.instance.storage_directory()) / "daily_volume.png")
    image = base64.b64encode(path.read_bytes()).decode()
    table = "\n".join(["| day | category | sales | amount | reconciled |",
                       "| --- | --- | --- | --- | --- |"]
                      + [f"| {d} | {c} | {n} | {a} | {r} |" for d, c, n, a, r in report.rows()])
    return dg.MaterializeResult(metadata={
        "chart": dg.MetadataValue.md(f"![daily volume](data:image/png;base64,{image})"),
        "path": dg.MetadataValue.path(str(path)),
        "table": dg.MetadataValue.md(table),
        "days_differing": len(report.differing_days)})


# Blocking: a load whose facts do not reconcile must not feed the report built on them.
@dg.asset_check(asset="fact_sales", blocking=True,
                description="fact_sales equals the source's transactions per day, to the cent")
def reconciled_to_the_cent(etl: EtlSettings) -> dg.AssetCheckResult:
    from ewallet_etl.pipelines.reconcile import compare, describe

    result = compare(etl.settings())
    return dg.AssetCheckResult(
        passed=result.ok,
        metadata={"days": result.days, "rows": result.rows,
                  "differences": "; ".join(describe(d) for d in result.mismatches)[:2000]
                  or "none"})


@dg.asset_check(asset="fact_sales", description="no row waits in etl_quarantine")
def quarantine_is_empty(etl: EtlSettings) -> dg.AssetCheckResult:
    from ewallet_etl.pipelines.status import status

    quarantined = status(etl.settings()).quarantined
    return dg.AssetCheckResult(passed=not quarantined, severity=dg.AssetCheckSeverity.WARN,
                               metadata={k: v for k, v in quarantined.items()} or {"rows": 0})


@dg.asset_check(asset="fact_sales", description="the batch's lag (source clock minus where the "
                "next run starts) is below ETL_MAX_LAG_SECONDS")
def fresh_enough(etl: EtlSettings) -> dg.AssetCheckResult:
    from ewallet_etl.pipelines.status import status

    settings = etl.settings()
    limit = settings.max_lag_seconds
    lag = status(settings).batch["lag_seconds"]
    return dg.AssetCheckResult(passed=lag is not None and lag <= limit,
                               metadata={"lag_seconds": lag if lag is not None else -1,
                                         "limit_seconds": limit})


# Not partitioned itself (partitioned checks are a preview feature in Dagster 1.13): it reads
# the days of the run it is in (a backfill's, or its own launched with partition tags); in a run
# without partitions, every day.
@dg.asset_check(asset="fact_sales_by_day", blocking=True,
                description="fact_sales equals the source per day, to the cent, on the days of "
                "the run's partitions only (a backfill checks what it reloaded)")
def partition_reconciled(context: dg.AssetCheckExecutionContext,
                         etl: EtlSettings) -> dg.AssetCheckResult:
    from ewallet_etl.pipelines.reconcile import compare, describe

    first, end = date.min, date.max
    if context.has_partition_key or context.has_partition_key_range:  # DAYS: ISO days
        keys = context.partition_key_range
        first = date.fromisoformat(keys.start)
        end = date.fromisoformat(keys.end) + timedelta(days=1)
    # compare() reads every day's totals (four numbers a day, cheap) and drills the differing
    # ones; only the run's days count here.
    wrong = [d for d in compare(etl.settings()).mismatches
             if d.day is not None and first <= d.day < end]
    return dg.AssetCheckResult(
        passed=not wrong,
        metadata={"days": f"[{first}, {end})", "days_differing": len(wrong),
                  "differences": "; ".join(describe(d) for d in wrong)[:2000] or "none"})


batch_job = dg.define_asset_job("incremental_batch_job", tags=WAREHOUSE_TAG,
                                selection=dg.AssetSelection.assets(
                                    "dim_users", "dim_merchants", "fact_sales"))
binlog_job = dg.define_asset_job("binlog_cdc_job", tags=WAREHOUSE_TAG,
                                 selection=dg.AssetSelection.assets("cdc_replicas"))
backfill_job = dg.define_asset_job("fact_sales_by_day_job", tags=WAREHOUSE_TAG,
                                   selection=dg.AssetSelection.assets("fact_sales_by_day"))
incremental_batch = dg.ScheduleDefinition(job=batch_job, cron_schedule="*/15 * * * *",
                                          name="incremental_batch",
                                          default_status=dg.DefaultScheduleStatus.RUNNING)


@dg.sensor(job=binlog_job, minimum_interval_seconds=60,
           default_status=dg.DefaultSensorStatus.RUNNING)
def binlog_cdc(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """A bounded binlog run every minute: each run's outcome is the stream's health. None while
    one is queued or running: a slow catch-up must not pile runs up behind it."""
    busy = context.instance.get_run_records(
        dg.RunsFilter(job_name=binlog_job.name, statuses=IN_PROGRESS), limit=1)
    if busy:
        return dg.SkipReason(f"binlog run {busy[0].dagster_run.run_id} is still in progress")
    return dg.RunRequest()


defs = dg.Definitions(
    assets=[mysql_batch, fact_sales_by_day, cdc_replicas, mongodb_facts, daily_volume_report],
    asset_checks=[reconciled_to_the_cent, quarantine_is_empty, fresh_enough,
                  partition_reconciled],
    jobs=[batch_job, binlog_job, backfill_job],
    schedules=[incremental_batch],
    sensors=[binlog_cdc],
    resources={"etl": EtlSettings()},
)
