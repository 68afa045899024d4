"""Live CDC from the MySQL/MariaDB binlog: preflight -> snapshot (first run) -> stream -> apply.

`cdc-stream.py --source binlog` runs `binlog_main`. The rules, in the order they apply:

* Preflight: binlog settings, privileges and a free replica server id are checked first; each
  missing prerequisite is one message with its fix, and the exit code is 2.
* First run (no saved position) or `--resnapshot`: copy users, merchants and transactions from
  one consistent snapshot, then stream from exactly the binlog position of that snapshot (no
  gap, no overlap). Snapshot rows carry the snapshot position's version, so any later change
  wins (binlog_state.version).
* Stream: parse -> micro-batch -> apply. A batch is applied when it holds `CDC_BATCH_EVENTS`
  changes or is `CDC_BATCH_MS` old; after it landed, the last transaction boundary it covers is
  saved in `cdc_state` (never before the data, never in the middle of a transaction). A giant
  transaction is applied in several batches (memory stays bounded) and its position is saved
  after its commit event: readers of the replica may briefly see part of it.
* Bounded by default: stop at the end position the server reported at start. `--follow`
  streams until SIGTERM/SIGINT, which finishes the batch and saves the position.
* A saved position that the server no longer has (purged binlog) stops the run with exit 2:
  only `--resnapshot` continues.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pymysql

from ewallet_etl.audit import RunRecord, close_dead_runs, record_run, record_start
from ewallet_etl.config import Settings
from ewallet_etl.core.binlog_position import (
    Position,
    derive_server_id,
    privilege_problems,
    server_id_problems,
    variable_problems,
    version,
)
from ewallet_etl.core.errors import one_line, outcome
from ewallet_etl.core.events import ChangeEvent
from ewallet_etl.core.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_REJECTS, EXIT_USAGE
from ewallet_etl.pipelines import binlog_apply
from ewallet_etl.pipelines import replay as cdc
from ewallet_etl.pipelines.faults import fault_point
from ewallet_etl.pipelines.progress import Progress
from ewallet_etl.pipelines.reconcile import sweep_deletes
from ewallet_etl.pipelines.stopping import SignalStop, pause, streaming
from ewallet_etl.retry import TransientError
from ewallet_etl.sources import mysql as source_mysql
from ewallet_etl.sources.binlog import (
    TABLE_KEYS,
    UnreplicableStatement,
    binary_logs,
    consistent_snapshot,
    control_connection,
    master_position,
    open_reader,
    read_changes,
    snapshot_events,
    snapshot_rows,
)
from ewallet_etl.sources.binlog_decode import fast_decoding
from ewallet_etl.sources.mysql import UNREACHABLE_CODES, SourceUnavailable, where
from ewallet_etl.state import store
from ewallet_etl.state.positions import read_position, save_position
from ewallet_etl.warehouse import Warehouse, open_warehouse

log = logging.getLogger(__name__)

PREFLIGHT_VARIABLES = ("log_bin", "binlog_format", "binlog_row_image", "binlog_row_metadata",
                       "server_id")


class PreflightError(RuntimeError):
    """The source is not ready for binlog CDC; `problems` holds one fixable message each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class StreamReport:
    snapshot_rows: int = 0
    events: int = 0
    batches: int = 0
    seconds: float = 0.0
    start: Position | None = None
    saved: Position | None = None
    stop_reason: str = ""
    error: str = ""
    max_lag: float = 0.0
    restarts: int = 0
    # run id, start time and reject counts for cdc.py's apply and quarantine
    apply: cdc.CdcReport = field(default_factory=lambda: cdc.CdcReport(
        run_id=uuid.uuid4().hex[:12], started_at=datetime.now(timezone.utc)))

    def summary(self) -> str:
        rate = self.events / self.seconds if self.seconds else 0.0
        return (f"binlog cdc {self.stop_reason}: snapshot_rows={self.snapshot_rows} "
                f"events={self.events} batches={self.batches} rows/s={rate:.0f} "
                f"rejected={self.apply.rejected} max_lag={self.max_lag:.1f}s "
                f"from {self.start} to {self.saved} in {self.seconds:.2f}s "
                f"restarts={self.restarts}")


def server_identity(settings: Settings) -> tuple[int, str]:
    """(replica server id, name reported in SHOW SLAVE HOSTS) of this stream."""
    server_id = settings.cdc_server_id or derive_server_id(
        settings.cdc_stream_name, settings.mysql_database)
    return server_id, f"{settings.cdc_stream_name}@{settings.mysql_database}"[:60]


def preflight(conn: Any, server_id: int, report_host: str) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        name, _, host = cur.fetchone()[0].rpartition("@")
        user = f"'{name}'@'{host}'"
        cur.execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN %s", (PREFLIGHT_VARIABLES,))
        variables = dict(cur.fetchall())
        cur.execute("SHOW GRANTS")
        grants = [row[0] for row in cur.fetchall()]
    replicas = registered_replicas(conn, server_id)
    problems = (variable_problems(variables) + privilege_problems(grants, user)
                + server_id_problems(server_id, int(variables.get("server_id", 0)), replicas,
                                     report_host))
    if problems:
        raise PreflightError(problems)


def registered_replicas(conn: Any, server_id: int) -> list[tuple[int, str]]:
    """(server id, reported host) of the replicas registered on the source. SHOW SLAVE HOSTS
    needs REPLICATION MASTER ADMIN on MariaDB >= 10.5; MySQL >= 8.4 only knows SHOW REPLICAS.
    Without either the id is not checked (a warning): a clash then shows as the server ending
    one of the two dump connections."""
    errors = []
    for statement in ("SHOW SLAVE HOSTS", "SHOW REPLICAS"):
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                return [(int(row[0]), str(row[1])) for row in cur.fetchall()]
        except pymysql.MySQLError as exc:
            errors.append(str(exc.args[-1] if exc.args else exc))
    log.warning("cannot list replicas (%s); server id %d not checked", errors[0], server_id)
    return []


def check_resumable(saved: Position, logs: dict[str, int], end: Position) -> None:
    """Refuse a saved position the server cannot serve any more (purged or reset binlog)."""
    if saved > end:
        raise PreflightError([f"the saved position {saved} is past the server's end {end}: "
                              f"the binlog was reset; drop the cdc_* tables and run with "
                              f"--resnapshot"])
    if saved.file not in logs or saved.pos > logs[saved.file]:
        raise PreflightError([f"the saved position {saved} is no longer on the server (binlog "
                              f"purged? SHOW BINARY LOGS has {', '.join(sorted(logs)) or 'none'}):"
                              f" run with --resnapshot to copy the tables again"])


def take_snapshot(settings: Settings, wh: Warehouse, report: StreamReport) -> Position:
    with consistent_snapshot(settings) as (position, conn):
        snap_version = version(position)
        log.info("snapshot at %s (version %d)", position, snap_version)
        progress = Progress("binlog snapshot")  # a long load: rows, rows/s, elapsed
        for table in ("users", "merchants", "transactions"):
            for rows in snapshot_rows(conn, table, settings.chunk_rows):
                binlog_apply.apply(wh, snapshot_events(table, rows, snap_version),
                                   report.apply)
                report.snapshot_rows += len(rows)
                progress.add(len(rows))
                fault_point("binlog_snapshot_chunk")
    for table in TABLE_KEYS:  # rows the source deleted while we were away (re-snapshot)
        gone = binlog_apply.tombstone_older(wh, table, snap_version, report.apply)
        if gone:
            log.info("re-snapshot: %d %s rows no longer in the source, deleted", gone, table)
    if settings.cdc_star_schema:
        sweep_star(settings, wh)  # facts a batch loaded that the source deleted since
    return position


def sweep_star(settings: Settings, wh: Warehouse) -> int:
    """Tombstone the fact_sales rows whose transaction the source no longer has, by the batch's
    own rule (`reconcile.sweep_deletes`): after a snapshot (deleted while no stream ran, e.g.
    while batch loads fed the star schema) and after a TRUNCATE. Returns how many."""
    conn = control_connection(settings)
    try:
        return sweep_deletes(conn, wh, source_mysql.db_clock(conn))
    finally:
        conn.close()


class Streamer:
    """Reads from `start`, applies micro-batches, saves boundaries; one instance per run."""

    def __init__(self, settings: Settings, wh: Warehouse, report: StreamReport,
                 state_version: int, stop: threading.Event) -> None:
        self.settings, self.wh, self.report, self.stop = settings, wh, report, stop
        self.state_version = state_version
        self.server_id, self.report_host = server_identity(settings)
        self.pending: list[ChangeEvent] = []
        self.boundary: Position | None = None
        self.saved: Position | None = None
        self.held_since: Position | None = None  # start of a prepared, unresolved XA
        self.batch_started = time.monotonic()
        self.last_ts = 0

    def run(self, start: Position, end: Position | None) -> None:
        self.boundary = self.saved = start
        heartbeat = max(self.settings.cdc_batch_ms / 1000, 0.1)
        reader = open_reader(self.settings, self.server_id, start, self.report_host,
                             follow=end is None, heartbeat=heartbeat)
        try:
            with fast_decoding():
                self._consume(reader, start, end)
        except pymysql.OperationalError as exc:  # the dump's first connect: worth a restart
            if exc.args and exc.args[0] in UNREACHABLE_CODES:
                raise SourceUnavailable(f"binlog stream: {exc.args[-1]}") from exc
            raise
        except UnreplicableStatement as stop:
            self.flush()  # what came before the statement lands; the position stays before it
            stop.saved = self.saved
            raise
        finally:
            reader.close()
        self.flush()
        if self.held_since is not None:
            log.info("a prepared XA transaction is not resolved yet: the saved position waits "
                     "at its start, %s", self.held_since)

    def _consume(self, reader: Any, start: Position, end: Position | None) -> None:
        limit = self.settings.cdc_batch_events
        for kind, payload, ts in read_changes(reader, start, self.settings.mysql_database):
            if kind == "rows":
                self.pending.extend(payload)
                self.last_ts = ts or self.last_ts
            elif kind == "truncate":
                self.truncate(*payload)
            elif kind == "boundary":  # save `resume`: never past a prepared XA transaction
                self.boundary = payload.resume
                self.held_since = payload.resume if payload.resume < payload.at else None
                self.last_ts = ts or self.last_ts
                if end is not None and payload.at >= end:
                    self.report.stop_reason = "reached the end position"
                    return
            if self.stop.is_set():
                self.report.stop_reason = "stopped by signal"
                return
            age = (time.monotonic() - self.batch_started) * 1000
            if len(self.pending) >= limit or age >= self.settings.cdc_batch_ms:
                self.flush()
        self.report.stop_reason = self.report.stop_reason or "reached the end of the binlog"

    def truncate(self, table: str, at: Position) -> None:
        """Replicate a TRUNCATE that ends at `at`: the batch read before it lands first (its
        rows are truncated too), then every current row of the table older than the TRUNCATE
        gets a tombstone at its version; later rows have higher versions and stay."""
        self.flush()
        gone = binlog_apply.tombstone_older(self.wh, table, version(at),
                                            self.report.apply)
        log.info("TRUNCATE %s at %s: %d replica rows deleted", table, at, gone)
        if table == "transactions" and self.settings.cdc_star_schema:
            log.info("TRUNCATE %s: %d facts deleted", table, sweep_star(self.settings, self.wh))

    def flush(self) -> None:
        """Apply what is pending, then save the last boundary (data first, position second)."""
        started, count = time.monotonic(), len(self.pending)
        if self.pending:
            binlog_apply.apply(self.wh, self.pending, self.report.apply)
            self.pending = []
            self.report.events += count
            self.report.batches += 1
            fault_point("binlog_before_save")
        if self.boundary is not None and self.boundary != self.saved:
            self.state_version = save_position(
                self.wh, self.settings.cdc_stream_name, self.boundary, self.server_id,
                self.state_version, where(self.settings), self.report.apply.run_id)
            self.saved = self.report.saved = self.boundary
        if count:
            lag = max(time.time() - self.last_ts, 0.0) if self.last_ts else 0.0
            self.report.max_lag = max(self.report.max_lag, lag)
            seconds = max(time.monotonic() - self.batch_started, 1e-6)
            log.info("batch: events=%d events/s=%.0f apply=%.3fs lag=%.1fs position=%s",
                     count, count / seconds, time.monotonic() - started, lag, self.saved)
        self.batch_started = time.monotonic()


def run_binlog(settings: Settings, follow: bool = False, resnapshot: bool = False,
               stop: threading.Event | None = None,
               report: StreamReport | None = None) -> StreamReport:
    """One bounded run (or a --follow run until `stop` is set); raises PreflightError.
    `report` (optional) is filled in as the run goes, for watchers in other threads."""
    stop = stop or threading.Event()
    report, clock = report or StreamReport(), time.monotonic()
    report.apply.feed_star = settings.cdc_star_schema
    server_id, report_host = server_identity(settings)
    conn = control_connection(settings)
    try:
        preflight(conn, server_id, report_host)
        end = master_position(conn)
        logs = binary_logs(conn)
    finally:
        conn.close()
    wh = open_warehouse(settings)
    status, pipeline = "failed", f"binlog:{settings.cdc_stream_name}"
    mode = "follow" if follow else "bounded"
    record_start(wh, report.apply.run_id, pipeline, mode, report.apply.started_at)
    try:
        close_dead_runs(wh, pipeline, report.apply.run_id, exclusive=False)
        refused = cdc.claim_for_binlog(wh, report_host)  # one version scheme per replica
        if refused:
            raise PreflightError([refused])
        store.note_handoff(wh, pipeline, "binlog", report.apply.run_id)
        saved = read_position(wh, settings.cdc_stream_name)
        state_version = saved.version if saved else 0
        if saved is None or saved.position is None or resnapshot:
            start = take_snapshot(settings, wh, report)
            state_version = save_position(wh, settings.cdc_stream_name, start, server_id,
                                          state_version, where(settings), report.apply.run_id)
        else:
            check_resumable(saved.position, logs, end)
            start = saved.position
        report.start = report.saved = start
        streaming(stop)  # from here a first signal lets the batch in flight finish
        _stream_with_restarts(settings, wh, report, state_version, stop,
                              None if follow else end)
        status = "completed_with_rejects" if report.apply.rejected else "success"
    except BaseException as exc:
        status, report.error = outcome(exc), one_line(exc)
        raise
    finally:
        report.seconds = time.monotonic() - clock
        _audit(wh, pipeline, report, mode, status)
        wh.close()
    return report


def _audit(wh: Warehouse, pipeline: str, report: StreamReport, mode: str, status: str) -> None:
    """The run's etl_runs row (pipeline `binlog:<stream>`), like every other pipeline's."""
    apply = report.apply
    record_run(wh, RunRecord(
        run_id=apply.run_id, pipeline=pipeline, mode=mode,
        started_at=apply.started_at,
        window_from=str(report.start or ""), window_to=str(report.saved or ""),
        rows_read=report.snapshot_rows + report.events, rows_loaded=apply.rows_applied,
        rows_rejected=apply.rejected, status=status, error=report.error,
        seconds=report.seconds,
    ))


def _stream_with_restarts(settings: Settings, wh: Warehouse, report: StreamReport,
                          state_version: int, stop: threading.Event, end: Position | None) -> None:
    """Stream; on a dropped connection restart from the last saved position (with backoff,
    `ETL_MAX_RETRIES` times in a row without progress)."""
    failures = 0
    while True:
        start = report.saved
        if end is not None and start >= end:
            report.stop_reason = report.stop_reason or "already at the end position"
            return
        streamer = Streamer(settings, wh, report, state_version, stop)
        try:
            streamer.run(start, end)
            return
        except TransientError as exc:
            state_version = streamer.state_version
            failures = 1 if report.saved != start else failures + 1
            if failures > settings.max_retries or stop.is_set():
                raise
            report.restarts += 1
            log.warning("binlog stream interrupted (%s); restart %d from %s",
                        one_line(exc), failures, report.saved)
            pause(stop, min(0.5 * 2 ** (failures - 1), 8.0))  # a stop ends the wait


def binlog_main(settings: Settings, follow: bool = False, resnapshot: bool = False,
                debug: bool = False) -> int:
    """Entry point for cdc_cli: SIGTERM/SIGINT stop a run cleanly (pipelines/stopping.py: the
    batch in flight finishes, or the run is abandoned as Interrupted); returns the exit code."""
    stop = SignalStop()
    previous = {sig: signal.signal(sig, stop.handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        report = run_binlog(settings, follow=follow, resnapshot=resnapshot, stop=stop)
    except PreflightError as exc:
        for problem in exc.problems:
            log.error("binlog preflight: %s", problem)
        return EXIT_USAGE
    except UnreplicableStatement as exc:  # needs a decision (--resnapshot): like a lost position
        log.error("binlog stream stopped: %s", exc)
        return EXIT_USAGE
    except Exception as exc:
        log.error("failed: %s", one_line(exc), exc_info=debug)
        return EXIT_FAILED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("%s", report.summary())
    if report.apply.rejected:
        log.warning("quarantined %d events: %s", report.apply.rejected, report.apply.reject_reasons)
        return EXIT_REJECTS
    return EXIT_OK
