"""The run audit: one row per pipeline run in analytics_dw.etl_runs, whatever the pipeline, and
the rows a pipeline refused, as analytics_dw.etl_quarantine rows."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

import pyarrow as pa

from ewallet_etl.core.errors import one_line
from ewallet_etl.core.instants import micros
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
        "started_us": pa.array([micros(run.started_at)], pa.uint64()),
    })
    try:
        wh.insert("etl_runs", row)
    except Exception as exc:
        log.warning("could not write the etl_runs row: %s", one_line(exc))


# Runs of a pipeline that started and never wrote their etl_runs row, this run excluded.
OPEN_RUNS_SQL = """
SELECT run_id, mode, toUnixTimestamp(started_at), host, pid FROM analytics_dw.etl_run_starts
WHERE pipeline = {pipeline:String} AND run_id != {current:String}
  AND run_id NOT IN (SELECT run_id FROM analytics_dw.etl_runs WHERE pipeline = {pipeline:String})
ORDER BY started_at
"""
KILLED = ("no end was recorded: the process was killed (SIGKILL), ran out of memory or its host "
          "stopped; its counts are unknown and what it wrote is kept by the idempotent loads")


@dataclass(frozen=True)
class OpenRun:
    run_id: str
    mode: str
    started_at: datetime
    host: str
    pid: int

    def describe(self) -> str:
        return (f"run {self.run_id} ({self.mode}, started {self.started_at:%Y-%m-%d %H:%M:%S} "
                f"UTC on {self.host} pid {self.pid})")


def record_start(wh: Warehouse, run_id: str, pipeline: str, mode: str,
                 started_at: datetime) -> None:
    """Write the run's start row, so that a run that dies without its etl_runs row (SIGKILL)
    is seen by the next one; never raises, like `record_run`."""
    row = pa.table({
        "run_id": [run_id], "pipeline": [pipeline], "mode": [mode],
        "started_at": pa.array([started_at], UTC_SECONDS),
        "host": [socket.gethostname()], "pid": pa.array([os.getpid()], pa.uint32()),
    })
    try:
        wh.insert("etl_run_starts", row)
    except Exception as exc:
        log.warning("could not write the etl_run_starts row: %s", one_line(exc))


def open_runs(wh: Warehouse, pipeline: str, current: str = "") -> list[OpenRun]:
    return [OpenRun(run_id, mode, datetime.fromtimestamp(int(at), timezone.utc), host, int(pid))
            for run_id, mode, at, host, pid
            in wh.query(OPEN_RUNS_SQL, {"pipeline": pipeline, "current": current})]


def close_dead_runs(wh: Warehouse, pipeline: str, current: str, exclusive: bool) -> list[OpenRun]:
    """Close the pipeline's runs that died without closing, as `killed`, with one warning each.
    A run is known dead when this one holds the pipeline's run lock (`exclusive`: no other run
    can be alive), or when it ran on this host under a process id that is gone (or is ours).
    Any other open run may still be going (on another host): it is left open."""
    closed = []
    for run in open_runs(wh, pipeline, current):
        if not (exclusive or (run.host == socket.gethostname() and not _alive(run.pid))):
            continue
        log.warning("%s of pipeline %s never finished (killed, out of memory or its host "
                    "stopped); recorded as killed", run.describe(), pipeline)
        record_run(wh, RunRecord(
            run_id=run.run_id, pipeline=pipeline, mode=run.mode, started_at=run.started_at,
            window_from="", window_to="", rows_read=0, rows_loaded=0, rows_rejected=0,
            status="killed", error=f"{KILLED} (found by run {current})", seconds=0.0))
        closed.append(run)
    return closed


def _alive(pid: int) -> bool:
    if pid == os.getpid():  # a restarted container reuses its process ids: this is us now
        return False
    try:
        os.kill(pid, 0)  # signal 0: a liveness check, nothing is sent
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def refusals_table(refused: Iterable[tuple[str, int, str, str]]) -> pa.Table:
    """(record_key, _version, reason, raw) tuples -> the rejects `quarantine_rows` takes."""
    keys, versions, reasons, raws = zip(*refused, strict=True)
    return pa.table({"record_key": pa.array(keys, pa.string()),
                     "_version": pa.array(versions, pa.uint64()),
                     "reason": pa.array(reasons, pa.string()),
                     "raw": pa.array(raws, pa.string())})


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
