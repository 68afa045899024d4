"""The batch ELT: read the window -> transform -> load -> save the checkpoint -> audit.

Order matters: dimensions before facts (so every fact key resolves), the checkpoint only after
every row of the window has landed (a crash before it re-reads the window, which the
idempotent ReplacingMergeTree load absorbs), the audit row last.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from . import source_mysql, transform, watermark
from .config import Settings
from .retry import with_retries
from .warehouse import Warehouse, connect, ensure_schema

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
WAREHOUSE_DDL = ROOT / "DDL-Clickhouse.sql"


@dataclass
class RunReport:
    run_id: str
    mode: str
    started_at: datetime
    window: watermark.Window | None = None
    old_checkpoint: datetime | None = None
    rows_read: int = 0
    rows_reread: int = 0  # rows of the overlap window, already loaded by an earlier run
    rows_loaded: int = 0
    sales: int = 0
    rows_rejected: int = 0
    dimension_rows: int = 0
    status: str = "running"
    error: str = ""
    seconds: float = 0.0
    reject_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def filtered(self) -> int:
        """Loaded rows that are not sales (FAILED, PENDING, REFUNDED)."""
        return self.rows_loaded - self.sales

    def summary(self) -> str:
        old = self.old_checkpoint.isoformat() if self.old_checkpoint else "none"
        new = self.window.high.isoformat() if self.window else "unchanged"
        return (
            f"run {self.run_id} {self.mode} {self.status}: read={self.rows_read} "
            f"(re-read from overlap={self.rows_reread}) "
            f"loaded={self.rows_loaded} sales={self.sales} filtered={self.filtered} "
            f"rejected={self.rows_rejected} dims={self.dimension_rows} "
            f"watermark {old} -> {new} in {self.seconds:.2f}s"
        )


def fault_point(name: str) -> None:
    """Test hook: SIGKILL this process at the named point when ETL_KILL_AT says so."""
    if os.environ.get("ETL_KILL_AT") == name:
        log.warning("ETL_KILL_AT=%s: killing myself", name)
        os.kill(os.getpid(), signal.SIGKILL)


def open_warehouse(settings: Settings) -> Warehouse:
    def attempt() -> Warehouse:
        wh = connect(settings.warehouse)
        ensure_schema(wh, WAREHOUSE_DDL)
        return wh

    return with_retries(attempt, f"connect to {settings.warehouse.describe()}", settings.max_retries)


def run_batch(settings: Settings, full_refresh: bool = False) -> RunReport:
    report = RunReport(
        run_id=uuid.uuid4().hex[:12],
        mode="full" if full_refresh else "incremental",
        started_at=datetime.now(timezone.utc),
    )
    clock = time.monotonic()
    retries = settings.max_retries
    conn = with_retries(lambda: source_mysql.connect(settings),
                        f"connect to MySQL at {source_mysql.where(settings)}", retries)
    wh = open_warehouse(settings)
    try:
        report.old_checkpoint = watermark.read_checkpoint(conn, settings.pipeline_name)
        if report.old_checkpoint is None:
            report.mode = "full"
        db_now = source_mysql.db_clock(conn)
        report.window = watermark.next_window(
            report.old_checkpoint,
            db_now,
            source_mysql.oldest_open_transaction(conn),
            lag=timedelta(seconds=settings.lag_seconds),
            overlap=timedelta(seconds=settings.overlap_seconds),
            full_refresh=full_refresh,
        )
        log.info("window %s (source now %s)", report.window, db_now.isoformat())
        _load(settings, wh, report, db_now)
        fault_point("before_checkpoint")
        watermark.save_checkpoint(conn, settings.pipeline_name, report.window.high)
        fault_point("after_checkpoint")
        report.status = "completed_with_rejects" if report.rows_rejected else "success"
    except Exception as exc:
        report.status = "failed"
        report.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise
    finally:
        report.seconds = time.monotonic() - clock
        _audit(wh, settings, report)
        conn.close()
        wh.close()
    return report


def _load(settings: Settings, wh: Warehouse, report: RunReport, db_now: datetime) -> None:
    window = report.window
    assert window is not None
    dims = (
        (source_mysql.USERS_SQL, transform.transform_users, "dim_users"),
        (source_mysql.MERCHANTS_SQL, transform.transform_merchants, "dim_merchants"),
    )
    for sql, transform_dim, table in dims:
        for chunk in source_mysql.stream(settings, sql, {"low": window.low}):
            _insert(wh, settings, table, transform_dim(chunk))
            report.dimension_rows += chunk.num_rows
    fault_point("after_dimensions")
    params = {"low": window.low, "high": window.high}
    for n, chunk in enumerate(source_mysql.stream(settings, source_mysql.TRANSACTIONS_SQL, params)):
        facts, rejects = transform.transform_transactions(chunk, db_now)
        _insert(wh, settings, "fact_sales", facts)
        _quarantine(wh, settings, report, rejects)
        report.rows_read += chunk.num_rows
        report.rows_reread += _count_before(chunk, report.old_checkpoint)
        report.rows_loaded += facts.num_rows
        report.sales += int(np.count_nonzero(
            facts.column("status").to_numpy(zero_copy_only=False) == transform.SALE_STATUS))
        log.debug("chunk %d: %d rows", n, chunk.num_rows)
        if n == 0:
            fault_point("after_first_chunk")


def _count_before(chunk: pa.Table, checkpoint: datetime | None) -> int:
    if checkpoint is None:
        return 0
    before = transform.versions(chunk.column("updated_at")) < transform.versions(
        pa.array([checkpoint.replace(tzinfo=None)], pa.timestamp("us")))[0]
    return int(np.count_nonzero(before))


def _insert(wh: Warehouse, settings: Settings, table: str, rows: pa.Table) -> None:
    # Safe to retry: a re-sent block carries the same keys and versions.
    with_retries(lambda: wh.insert(table, rows), f"insert into {table}", settings.max_retries)


def _quarantine(wh: Warehouse, settings: Settings, report: RunReport, rejects: pa.Table) -> None:
    if rejects.num_rows == 0:
        return
    for reason in rejects.column("reason").to_pylist():
        report.reject_reasons[reason] = report.reject_reasons.get(reason, 0) + 1
    report.rows_rejected += rejects.num_rows
    log.warning("quarantined %d rows: %s", rejects.num_rows, report.reject_reasons)
    rows = quarantine_rows(rejects, "transactions", report.run_id, report.started_at)
    _insert(wh, settings, "etl_quarantine", rows)


def quarantine_rows(rejects: pa.Table, source: str, run_id: str, at: datetime) -> pa.Table:
    """Transform rejects (record_key, _version, reason, raw) -> etl_quarantine rows."""
    n = rejects.num_rows
    return pa.table({
        "source": pa.array([source] * n, pa.string()),
        "record_key": rejects.column("record_key"),
        "_version": rejects.column("_version"),
        "reason": rejects.column("reason"),
        "raw": rejects.column("raw"),
        "run_id": pa.array([run_id] * n, pa.string()),
        "rejected_at": pa.array([at] * n, transform.UTC_SECONDS),
    })


def _audit(wh: Warehouse, settings: Settings, report: RunReport) -> None:
    window = report.window
    row = pa.table({
        "run_id": [report.run_id],
        "pipeline": [settings.pipeline_name],
        "mode": [report.mode],
        "started_at": pa.array([report.started_at], transform.UTC_SECONDS),
        "finished_at": pa.array([datetime.now(timezone.utc)], transform.UTC_SECONDS),
        "window_from": [window.low.isoformat() if window else ""],
        "window_to": [window.high.isoformat() if window else ""],
        "rows_read": pa.array([report.rows_read], pa.uint64()),
        "rows_loaded": pa.array([report.rows_loaded], pa.uint64()),
        "rows_rejected": pa.array([report.rows_rejected], pa.uint64()),
        "status": [report.status],
        "error": [report.error],
        "seconds": [report.seconds],
    })
    try:
        wh.insert("etl_runs", row)
    except Exception as exc:  # the audit must never hide the run's own outcome
        log.warning("could not write the etl_runs row: %s", str(exc).splitlines()[0])
