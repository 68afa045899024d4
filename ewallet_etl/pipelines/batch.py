"""The batch ELT: plan the window -> read -> transform -> load -> save the checkpoint -> audit.

What it guarantees (docs/guarantees.md has the long form, docs/correctness.md the rules):

* Order. Dimensions before facts, so every fact key resolves; the facts of the window stream
  through one INSERT (`Warehouse.insert_stream`); the checkpoint only after every row of the
  window has landed; the audit row last. A crash anywhere before the checkpoint save
  leaves the checkpoint where it was: the next run reads the window again and the idempotent
  ReplacingMergeTree load absorbs what had already landed (at-least-once delivery, one current
  row per key). A crash after the save loses nothing: the window had landed. `--full-refresh`
  also sweeps hard deletes, which no watermark sees (`reconcile.sweep_deletes`).
* Retries. A server that is unreachable or drops the connection (`TransientError`) is retried
  with backoff, `ETL_MAX_RETRIES` times, per step: planning the window, each dimension and
  quarantine insert (re-sending a block is harmless), loading the window's facts (from its
  start, whichever side dropped: neither stream can resume; rows already inserted are
  absorbed), saving the checkpoint. Every source step first pings the run's PyMySQL
  connection (`ControlConnection`, opened again if it dropped), which fails at once on a
  refused port, before connectorx (whose pool waits ~30 s on one) is asked.
* One run per pipeline. The run's control connection holds a MySQL named lock
  (`source_mysql.run_lock_name`), taken again on every reconnect: a second run of the same
  pipeline fails at once with `RunInProgress`, before it reads or writes anything. A full
  refresh checks it still holds the lock right before its hard-delete sweep, whose comparison
  another run's load would otherwise disturb.
* Kill points for the fault tests (`faults.py`): no-ops unless a test arms one.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from datetime import time as dt_time
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pymysql

from ewallet_etl.audit import (
    RunRecord,
    close_dead_runs,
    count_reasons,
    quarantine_rows,
    record_run,
    record_start,
)
from ewallet_etl.config import Settings
from ewallet_etl.core import transform
from ewallet_etl.core.errors import one_line, outcome
from ewallet_etl.core.instants import EPOCH, as_utc, micros
from ewallet_etl.core.window import Window, next_window, start_point
from ewallet_etl.pipelines import faults
from ewallet_etl.pipelines.faults import fault_point
from ewallet_etl.pipelines.progress import Progress
from ewallet_etl.retry import with_retries
from ewallet_etl.sources import mysql as source_mysql
from ewallet_etl.sources.mysql_ids import with_found_flags
from ewallet_etl.state import store
from ewallet_etl.state.checkpoint import read_checkpoint, read_landed, save_checkpoint, save_landed
from ewallet_etl.warehouse import Warehouse, WarehouseError, connect, open_warehouse

log = logging.getLogger(__name__)


DIMENSIONS = (
    ("users", source_mysql.USERS_SQL, transform.transform_users, "dim_users"),
    ("merchants", source_mysql.MERCHANTS_SQL, transform.transform_merchants, "dim_merchants"),
)


# A read of transactions: its statement, parameters and the key it pages on (or None).
FactQuery = tuple[str, dict[str, Any], str | None]


@dataclass
class RunReport:
    run_id: str
    mode: str
    started_at: datetime
    window: Window | None = None
    old_checkpoint: datetime | None = None
    rows_read: int = 0
    rows_reread: int = 0  # rows of the overlap window, already loaded by an earlier run
    rows_loaded: int = 0
    sales: int = 0
    rows_rejected: int = 0
    dimension_rows: int = 0
    rows_deleted: int = 0  # facts tombstoned by a hard-delete sweep (full refresh, hand-off)
    took_over_from: str = ""  # the pipeline that fed the star schema since this one's last run
    loaded_us: int = 0  # the source's clock at the start (µs): the stamp of the facts it writes
    inferred: int = 0  # users and merchants inferred: facts refer to them, the source lacks them
    inferred_ids: set[tuple[str, int]] = field(default_factory=set)
    retracted: int = 0  # tombstones written for refused versions (see transform.retractions)
    status: str = "running"
    error: str = ""
    seconds: float = 0.0
    reject_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def filtered(self) -> int:
        """Loaded rows that are not sales (FAILED, PENDING, REFUNDED)."""
        return self.rows_loaded - self.sales

    def reset_counts(self) -> None:
        """Before (re)reading the window: a retried read counts its rows once."""
        self.rows_read = self.rows_reread = self.rows_loaded = self.sales = 0
        self.rows_rejected = self.dimension_rows = self.inferred = self.retracted = 0
        self.inferred_ids = set()
        self.reject_reasons = {}

    def summary(self) -> str:
        old = self.old_checkpoint.isoformat() if self.old_checkpoint else "none"
        new = self.window.high.isoformat() if self.window else "unchanged"
        if self.mode == "backfill":  # its window is days of transaction_time
            old = new = "unchanged"
        return (
            f"run {self.run_id} {self.mode} {self.status}: read={self.rows_read} "
            f"(new={self.rows_read - self.rows_reread} overlap={self.rows_reread}) "
            f"loaded={self.rows_loaded} sales={self.sales} filtered={self.filtered} "
            f"rejected={self.rows_rejected} dims={self.dimension_rows} "
            + (f"deleted={self.rows_deleted} " if self.rows_deleted else "")
            + (f"inferred={self.inferred} " if self.inferred else "")
            + f"watermark {old} -> {new} in {self.seconds:.2f}s"
        )


def run_batch(settings: Settings, full_refresh: bool = False) -> RunReport:
    report = RunReport(
        run_id=uuid.uuid4().hex[:12],
        mode="full" if full_refresh else "incremental",
        started_at=datetime.now(timezone.utc),
    )
    with _audited(settings, report) as (wh, source):
        db_now = _plan(settings, source, wh, report, full_refresh)
        report.loaded_us = micros(db_now)
        log.info("window %s (source now %s)", report.window, db_now.isoformat())
        with_retries(lambda: _load(settings, source, wh, report),
                     f"load the window from MySQL at {source_mysql.where(settings)}",
                     settings.max_retries)
        # Hard deletes are invisible to the watermark: a full refresh sweeps them, and so does
        # a run that takes over from another pipeline (a stream that stopped does not see the
        # deletes made since), so that the warehouse equals the source at every switch.
        if full_refresh or report.took_over_from:
            from ewallet_etl.pipelines.reconcile import sweep_deletes

            # Still this pipeline's only run (its lock): no other run loads while it compares.
            conn = with_retries(source.get, f"check the run lock at {source_mysql.where(settings)}",
                                settings.max_retries)
            try:  # a full refresh rewrote every row: only the others can be gone
                report.rows_deleted = sweep_deletes(
                    conn, wh, db_now, rewritten=report.loaded_us if full_refresh else None)
            except pymysql.MySQLError as exc:
                raise source_mysql.source_error(settings, exc) from exc
        fault_point("before_checkpoint")
        high = report.window.high
        # The warehouse's own mark first: a crash between the two saves leaves the lower of
        # them (the checkpoint) to start from, and the window is read again.
        save_landed(wh, settings.pipeline_name, settings.mysql_database, high, report.run_id)
        with_retries(lambda: _save_checkpoint(settings, source, high),
                     f"save the checkpoint in MySQL at {source_mysql.where(settings)}",
                     settings.max_retries)
        fault_point("after_checkpoint")
    return report


@contextmanager
def _audited(settings: Settings, report: RunReport) -> Iterator[
        tuple[Warehouse, source_mysql.ControlConnection]]:
    """A run's warehouse and source (holding the run lock), its outcome in `report`, and its
    etl_runs row written whatever happens, a signal included."""
    clock = time.monotonic()
    wh = open_warehouse(settings)  # first, so a run that fails on the source is audited too
    source = source_mysql.ControlConnection(settings, lock=True)  # one run per pipeline
    record_start(wh, report.run_id, settings.pipeline_name, report.mode, report.started_at)
    try:
        with_retries(source.get, f"connect to MySQL at {source_mysql.where(settings)}",
                     settings.max_retries)
        # The lock is ours: a run of this pipeline that never closed is dead.
        close_dead_runs(wh, settings.pipeline_name, report.run_id, exclusive=True)
        if report.mode != "backfill":  # a backfill moves no state: it hands nothing over
            handed = store.note_handoff(wh, settings.pipeline_name, "batch", report.run_id)
            report.took_over_from = handed.pipeline if handed else ""
        yield wh, source
        report.status = "completed_with_rejects" if report.rows_rejected else "success"
    except BaseException as exc:
        report.status, report.error = outcome(exc), one_line(exc)
        raise
    finally:
        source.close()
        report.seconds = time.monotonic() - clock
        _audit(wh, settings, report)
        wh.close()


def run_backfill(settings: Settings, since: date, until: date) -> RunReport:
    """Reload the transactions of the days [since, until) of transaction_time, whatever their
    change time, with every user and merchant, and tombstone the facts of those days the source
    no longer has. The checkpoint and the warehouse's mark are left alone: the watermark still
    means what it meant. Idempotent, like every load; one run per pipeline (the run lock)."""
    if not since < until:
        raise ValueError(f"backfill: --since {since} must be before --until {until}")
    report = RunReport(run_id=uuid.uuid4().hex[:12], mode="backfill",
                       started_at=datetime.now(timezone.utc))
    report.window = Window(as_utc(datetime.combine(since, dt_time())),
                           as_utc(datetime.combine(until, dt_time())))
    with _audited(settings, report) as (wh, source):
        def plan() -> datetime:
            conn = source.get()
            source_mysql.check_change_columns(conn)
            return source_mysql.db_clock(conn)

        db_now = with_retries(plan, f"read the clock of MySQL at {source_mysql.where(settings)}",
                              settings.max_retries)
        report.loaded_us = micros(db_now)
        log.info("backfill of the days [%s, %s) of transaction_time", since, until)
        facts = (source_mysql.TRANSACTIONS_BY_DAY_SQL,
                 {"since": report.window.low, "until": report.window.high}, None)
        with_retries(lambda: _load(settings, source, wh, report, dims_since=EPOCH, facts=facts),
                     f"load the days from MySQL at {source_mysql.where(settings)}",
                     settings.max_retries)
        from ewallet_etl.pipelines.reconcile import sweep_deletes

        try:
            report.rows_deleted = sweep_deletes(source.get(), wh, db_now, days=(since, until),
                                                rewritten=report.loaded_us)
        except pymysql.MySQLError as exc:
            raise source_mysql.source_error(settings, exc) from exc
    return report


def dry_run(settings: Settings, full_refresh: bool = False) -> dict[str, object]:
    """What the next run would do, without writing anything anywhere (not even the warehouse's
    schema): its mode, window and the rows it would read."""
    conn = source_mysql.connect(settings)
    wh = connect(settings.warehouse)
    try:
        source_mysql.check_change_columns(conn)
        recorded = read_checkpoint(conn, settings.pipeline_name)
        try:
            landed = read_landed(wh, settings.pipeline_name, settings.mysql_database)
        except WarehouseError:  # no schema yet: nothing has landed here
            landed = None
        checkpoint = start_point(recorded, landed)
        window = plan_window(settings, checkpoint, *source_mysql.window_bounds(conn),
                             full_refresh=full_refresh)
        counts = {table: _count_rows(conn, sql, window)
                  for table, sql in source_mysql.WINDOW_COUNT_SQL.items()}
    finally:
        conn.close()
        wh.close()
    return {"mode": "full" if full_refresh or checkpoint is None else "incremental",
            "checkpoint": recorded.isoformat() if recorded else None,
            "landed": landed.isoformat() if landed else None,
            "window": str(window), "rows": counts}


def _count_rows(conn: pymysql.connections.Connection, sql: str, window: Window) -> int:
    bounds = {"low": window.low, "high": window.high}  # naive UTC: what a UTC session reads
    with conn.cursor() as cur:
        cur.execute(sql, {k: v.astimezone(timezone.utc).replace(tzinfo=None)
                          for k, v in bounds.items()})
        row = cur.fetchone()
    return int(row[0]) if row else 0


def _plan(settings: Settings, source: source_mysql.ControlConnection, wh: Warehouse,
          report: RunReport, full_refresh: bool) -> datetime:
    """Check the change columns; read the checkpoint, the warehouse's own mark, the source's
    clock and its oldest open transaction; set the window."""

    def attempt() -> tuple[datetime | None, datetime, datetime | None]:
        try:
            conn = source.get()
            source_mysql.check_change_columns(conn)
            checkpoint = read_checkpoint(conn, settings.pipeline_name)
            return (checkpoint, *source_mysql.window_bounds(conn))
        except pymysql.MySQLError as exc:
            raise source_mysql.source_error(settings, exc) from exc

    recorded, db_now, oldest_trx = with_retries(
        attempt, f"read the checkpoint from MySQL at {source_mysql.where(settings)}",
        settings.max_retries)
    landed = read_landed(wh, settings.pipeline_name, settings.mysql_database)
    checkpoint = start_point(recorded, landed)
    if recorded is not None and checkpoint != recorded:
        log.warning("the warehouse holds data up to %s only (checkpoint %s): loading from there",
                    landed.isoformat() if landed else "nothing", recorded.isoformat())
    report.old_checkpoint = checkpoint
    if checkpoint is None:
        report.mode = "full"
    report.window = plan_window(settings, checkpoint, db_now, oldest_trx, full_refresh)
    return db_now


def plan_window(settings: Settings, checkpoint: datetime | None, db_now: datetime,
                oldest_trx: datetime | None, full_refresh: bool = False) -> Window:
    """The window rule (core.window.next_window) with this pipeline's lag and overlap."""
    return next_window(checkpoint, db_now, oldest_trx,
                       lag=timedelta(seconds=settings.lag_seconds),
                       overlap=timedelta(seconds=settings.overlap_seconds),
                       full_refresh=full_refresh)


def _load(settings: Settings, source: source_mysql.ControlConnection, wh: Warehouse,
          report: RunReport, dims_since: datetime | None = None,
          facts: FactQuery | None = None) -> None:
    """Read the whole window and load it; safe to run again from the start after a failure.

    The facts stream through one `insert_stream`: chunks are read and transformed as the
    warehouse asks for them, so memory holds a chunk or two, never the window."""
    window = report.window
    assert window is not None
    low = window.low if dims_since is None else dims_since
    report.reset_counts()
    try:
        conn = source.get()  # fails at once if MySQL is gone; connectorx would wait
        for source_table, sql, transform_dim, table in DIMENSIONS:
            if not source_mysql.changed_since(conn, source_table, low):
                continue
            for chunk in source_mysql.stream(settings, sql, {"low": low}, None):
                wh.insert(table, transform_dim(chunk))
                report.dimension_rows += chunk.num_rows
        fault_point("after_dimensions")
        query = facts or _window_query(window, wh.paged_reads)
        chunks = _fact_chunks(settings, conn, wh, report, *query)
        wh.insert_stream("fact_sales", faults.around_facts(
            chunks, lambda part: wh.insert("fact_sales", part)))
    except pymysql.MySQLError as exc:
        raise source_mysql.source_error(settings, exc) from exc


def _window_query(window: Window, paged: bool) -> FactQuery:
    """The window's transactions: the whole table in pages, when the window starts at the
    epoch and the warehouse asks for paged reads (`Warehouse.paged_reads`)."""
    sql, key = source_mysql.transactions_read(paged and window.low == EPOCH)
    return sql, {"low": window.low, "high": window.high}, key


def _fact_chunks(settings: Settings, conn: pymysql.connections.Connection, wh: Warehouse,
                 report: RunReport, sql: str, params: dict[str, Any],
                 key: str | None) -> Iterator[pa.Table]:
    """The fact rows `sql` reads, chunk by chunk; rejects go to etl_quarantine on the way."""
    chunks = source_mysql.stream(settings, sql, params, key)
    progress = Progress("transactions read")
    for n, chunk in enumerate(with_found_flags(chunks, conn), start=1):
        progress.add(chunk.num_rows)
        facts, rejects = transform.transform_transactions(chunk)
        _infer_members(wh, settings, report, chunk)  # before the facts: every key resolves
        if rejects.num_rows:
            wh.insert("etl_quarantine", _quarantine(report, rejects))
            retracted = transform.retractions(rejects)
            wh.insert("fact_sales", retracted)
            report.retracted += retracted.num_rows
        _count(report, chunk, facts)
        log.debug("chunk %d: %d rows", n, chunk.num_rows)
        yield facts.append_column("_loaded_us", pa.array(
            np.full(facts.num_rows, report.loaded_us, dtype=np.uint64)))


def _infer_members(wh: Warehouse, settings: Settings, report: RunReport,
                   chunk: pa.Table) -> None:
    """Inferred members for the users and merchants this chunk refers to that the source has
    no row of (yet): the facts load now, the real rows replace the members when they come."""
    for found, ids, domain, table in (
            ("user_found", "user_id", "user", "dim_users"),
            ("merchant_found", "merchant_id", "merchant", "dim_merchants")):
        missing = pc.equal(chunk.column(found), 0)
        if not pc.any(missing).as_py():
            continue
        wanted = {int(i) for i in pc.drop_null(chunk.column(ids).filter(missing)).to_pylist()}
        new = sorted(i for i in wanted if (ids, i) not in report.inferred_ids)
        if not new:
            continue
        report.inferred_ids.update((ids, i) for i in new)
        members = transform.inferred_members(np.array(new, dtype=np.uint64), domain)
        wh.insert(table, members)
        report.inferred += members.num_rows
        log.warning("%d %s referred to by transactions have no row in the source yet: "
                    "inferred members written", members.num_rows, ids.replace("_id", "s"))


def _count(report: RunReport, chunk: pa.Table, facts: pa.Table) -> None:
    report.rows_read += chunk.num_rows
    report.rows_reread += _count_before(chunk, report.old_checkpoint)
    report.rows_loaded += facts.num_rows
    report.sales += pc.sum(pc.equal(facts.column("status"), transform.SALE_STATUS)).as_py() or 0


def _count_before(chunk: pa.Table, checkpoint: datetime | None) -> int:
    if checkpoint is None:
        return 0
    before = transform.versions(chunk.column("updated_at")) < transform.versions(
        pa.array([checkpoint.replace(tzinfo=None)], pa.timestamp("us")))[0]
    return int(np.count_nonzero(before))


def _save_checkpoint(settings: Settings, source: source_mysql.ControlConnection,
                     high: datetime) -> None:
    try:
        save_checkpoint(source.get(), settings.pipeline_name, high)
    except pymysql.MySQLError as exc:
        raise source_mysql.source_error(settings, exc) from exc


def _quarantine(report: RunReport, rejects: pa.Table) -> pa.Table:
    """Count the rejects in the report; return them as etl_quarantine rows."""
    count_reasons(report.reject_reasons, rejects.column("reason").to_pylist())
    report.rows_rejected += rejects.num_rows
    log.warning("quarantined %d rows: %s", rejects.num_rows, report.reject_reasons)
    return quarantine_rows(rejects, "transactions", report.run_id, report.started_at)


def _audit(wh: Warehouse, settings: Settings, report: RunReport) -> None:
    window = report.window
    record_run(wh, RunRecord(
        run_id=report.run_id, pipeline=settings.pipeline_name, mode=report.mode,
        started_at=report.started_at,
        window_from=window.low.isoformat() if window else "",
        window_to=window.high.isoformat() if window else "",
        rows_read=report.rows_read, rows_loaded=report.rows_loaded,
        rows_rejected=report.rows_rejected, status=report.status, error=report.error,
        seconds=report.seconds,
    ))
