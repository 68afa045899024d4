"""The run audit: one row per pipeline run in analytics_dw.etl_runs, whatever the pipeline, and
the rows a pipeline refused, as analytics_dw.etl_quarantine rows."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

import pyarrow as pa

from ewallet_etl.core.errors import first_line
from ewallet_etl.warehouse import Warehouse

log = logging.getLogger(__name__)

UTC_SECONDS = pa.timestamp("s", tz="UTC")


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    pipeline: str
    mode: str
    started_at: datetime
    window_from: str
    window_to: str
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    status: str
    error: str
    seconds: float


def record_run(wh: Warehouse, run: RunRecord) -> None:
    """Write the run's row; never raises, so the audit cannot hide the run's own outcome."""
    row = pa.table({
        "run_id": [run.run_id],
        "pipeline": [run.pipeline],
        "mode": [run.mode],
        "started_at": pa.array([run.started_at], UTC_SECONDS),
        "finished_at": pa.array([datetime.now(timezone.utc)], UTC_SECONDS),
        "window_from": [run.window_from],
        "window_to": [run.window_to],
        "rows_read": pa.array([run.rows_read], pa.uint64()),
        "rows_loaded": pa.array([run.rows_loaded], pa.uint64()),
        "rows_rejected": pa.array([run.rows_rejected], pa.uint64()),
        "status": [run.status],
        "error": [run.error],
        "seconds": [run.seconds],
    })
    try:
        wh.insert("etl_runs", row)
    except Exception as exc:
        log.warning("could not write the etl_runs row: %s", first_line(exc))


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
        "rejected_at": pa.array([at] * n, UTC_SECONDS),
    })


def count_reasons(reasons: dict[str, int], new: Iterable[str]) -> None:
    """Add refusals to a run's count per reason (what its summary and log line show)."""
    for reason in new:
        reasons[reason] = reasons.get(reason, 0) + 1
