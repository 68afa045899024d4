"""`ewallet-etl status`: where every pipeline stands, read-only.

Per pipeline: its kind; the batch's checkpoint in the source and its mark in this warehouse
(and the lag: the source's clock minus the point the next run starts from); the binlog
streams' saved positions and the source's current binlog end; the last runs and their
outcome; the quarantined rows per source. Nothing is written: the warehouse is opened as it
is (no schema created or migrated; one without the schema is shown as such), and a side that
cannot be reached (the source, the warehouse) is shown as unreachable beside what the other
side holds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from ewallet_etl.config import Settings
from ewallet_etl.core.errors import one_line
from ewallet_etl.core.instants import from_micros
from ewallet_etl.core.window import start_point
from ewallet_etl.sources import mysql as source_mysql
from ewallet_etl.state import store
from ewallet_etl.state.checkpoint import read_checkpoint, read_landed
from ewallet_etl.warehouse import WAREHOUSE_DDL, Warehouse, missing_objects, open_warehouse

LAST_RUNS = 5
RUNS_SQL = """
SELECT pipeline, mode, status, started_us, rows_read, rows_loaded, rows_rejected, error
FROM analytics_dw.etl_runs
ORDER BY started_us DESC, finished_at DESC
LIMIT {limit:UInt32}
"""
# Runs that started and have not ended: going now, or dead without closing (not yet seen by
# a later run of their pipeline, which closes them as `killed`).
OPEN_RUNS_SQL = """
SELECT pipeline, run_id, mode, toUInt64(toUnixTimestamp(started_at)) * 1000000, host, pid
FROM analytics_dw.etl_run_starts
WHERE run_id NOT IN (SELECT run_id FROM analytics_dw.etl_runs)
ORDER BY started_at DESC
LIMIT {limit:UInt32}
"""
QUARANTINE_SQL = """
SELECT source, count() FROM analytics_dw.etl_quarantine FINAL GROUP BY source ORDER BY source
"""
# Binlog positions saved before etl_state existed (state/positions.py reads them too).
POSITIONS_BEFORE_SQL = """
SELECT stream, argMax(log_file, _version), argMax(log_pos, _version),
       toUInt64(toUnixTimestamp(argMax(saved_at, _version))) * 1000000
FROM analytics_dw.cdc_state GROUP BY stream ORDER BY stream
"""


@dataclass
class Status:
    source: str
    warehouse: str
    source_now: str
    batch: dict[str, Any]
    binlog_end: str | None
    streams: list[dict[str, Any]] = field(default_factory=list)
    last_runs: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    handoffs: list[dict[str, Any]] = field(default_factory=list)
    open_runs: list[dict[str, Any]] = field(default_factory=list)
    quarantined: dict[str, int] = field(default_factory=dict)
    source_error: str | None = None  # the source could not be read: why (one line)
    warehouse_error: str | None = None  # unreachable, or without the schema: why

    @property
    def complete(self) -> bool:
        """Both sides read (a warehouse without the schema is an answer, not a failure)."""
        return self.source_error is None and (self.warehouse_error is None
                                              or self.warehouse_error.startswith("no schema"))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def to_text(self) -> str:
        b = self.batch
        lag = "-" if b["lag_seconds"] is None else f"{b['lag_seconds']} s"
        lines = [f"source     unreachable: {self.source_error}" if self.source_error else
                 f"source     {self.source} (clock {self.source_now})",
                 f"warehouse  {self.warehouse}" + (f": {self.warehouse_error}"
                                                   if self.warehouse_error else ""),
                 f"batch      pipeline {b['pipeline']}: checkpoint {b['checkpoint'] or 'none'}, "
                 f"landed here {b['landed'] or 'nothing'}; next run {b['next_run']}, lag {lag}"
                 + ("" if b["fresh"] is not False else
                    f" (over ETL_MAX_LAG_SECONDS={b['max_lag_seconds']})")]
        for s in self.streams:
            lines.append(f"binlog     stream {s['stream']}: at {s['position']} (saved "
                         f"{s['saved_at']}); source at {self.binlog_end or 'no binlog'}")
        if not self.streams:
            lines.append("binlog     no stream has run into this warehouse")
        for st in self.states:
            lines.append(f"state      {st['pipeline']} ({st['kind']}): {st['at']}, saved "
                         f"{st['saved_at']}")
        for h in self.handoffs:
            lines.append(f"hand-off   {h['at']}: {h['from']} -> {h['to']}")
        for r in self.last_runs:
            lines.append(f"run        {r['started_at']} {r['pipeline']} {r['mode']} {r['status']}"
                         f": read={r['rows_read']} loaded={r['rows_loaded']} "
                         f"rejected={r['rows_rejected']}" + (f" ({r['error']})" if r['error']
                                                             else ""))
        for r in self.open_runs:
            lines.append(f"open       {r['started_at']} {r['pipeline']} {r['mode']} run "
                         f"{r['run_id']} on {r['host']} pid {r['pid']}: running, or died "
                         f"without closing (its pipeline's next run will tell)")
        quarantined = ", ".join(f"{k}={v}" for k, v in self.quarantined.items()) or "none"
        lines.append(f"quarantine {quarantined}")
        return "\n".join(lines)


def status(settings: Settings) -> Status:
    report = Status(source=source_mysql.where(settings), warehouse=settings.warehouse.describe(),
                    source_now="", batch={}, binlog_end=None)
    now = checkpoint = None
    try:
        conn = source_mysql.connect(settings)
        try:
            now = source_mysql.db_clock(conn)
            checkpoint = read_checkpoint(conn, settings.pipeline_name)
            report.source_now, report.binlog_end = now.isoformat(), source_mysql.binlog_end(conn)
        finally:
            conn.close()
    except Exception as exc:  # shown beside the warehouse's side, not instead of it
        report.source_error = one_line(exc)
    wh = _open(settings, report)
    try:
        landed = read_landed(wh, settings.pipeline_name, settings.mysql_database) if wh else None
        report.batch = _batch(settings, now, checkpoint, landed)
        if wh is not None:
            _warehouse_side(settings, wh, report)
    finally:
        if wh is not None:
            wh.close()
    return report


def _open(settings: Settings, report: Status) -> Warehouse | None:
    """The warehouse as it is, or None (why in `report.warehouse_error`)."""
    try:
        wh = open_warehouse(settings, schema=False)
    except Exception as exc:
        report.warehouse_error = one_line(exc)
        return None
    missing = missing_objects(wh, WAREHOUSE_DDL)
    if missing:
        report.warehouse_error = (f"no schema ({len(missing)} of its tables and views missing, "
                                  f"e.g. {missing[0]}): nothing has run into it; the first run "
                                  "creates it")
        wh.close()
        return None
    return wh


def _warehouse_side(settings: Settings, wh: Warehouse, report: Status) -> None:
    report.streams = _streams(wh, settings.cdc_stream_name)
    report.states = [{"pipeline": saved.pipeline, "kind": saved.kind, "source": saved.source,
                      "cursor": saved.cursor, "at": store.describe(saved.kind, saved.cursor),
                      "saved_at": _iso(saved.saved_at_us)}
                     for saved in sorted(store.latest(wh).values(), key=lambda x: x.pipeline)]
    report.handoffs = [{"at": _iso(h["at_us"]),
                        "from": f"{h['from']['pipeline']} ({h['from']['kind']}, "
                                f"{store.describe(h['from']['kind'], h['from']['cursor'])})",
                        "to": f"{h['to']['pipeline']} ({h['to']['kind']})"}
                       for h in store.handoffs(wh, LAST_RUNS)]
    report.last_runs = [
        {**dict(zip(("pipeline", "mode", "status", "started_at", "rows_read", "rows_loaded",
                     "rows_rejected", "error"), row, strict=True)), "started_at": _iso(row[3])}
        for row in wh.query(RUNS_SQL, {"limit": LAST_RUNS})]
    report.open_runs = [
        {**dict(zip(("pipeline", "run_id", "mode", "started_at", "host", "pid"), row,
                    strict=True)), "started_at": _iso(row[3])}
        for row in wh.query(OPEN_RUNS_SQL, {"limit": LAST_RUNS})]
    report.quarantined = {source: int(n) for source, n in wh.query(QUARANTINE_SQL)}


def _streams(wh: Warehouse, configured: str) -> list[dict[str, Any]]:
    """Every binlog stream's position: its etl_state save, else its cdc_state row (older);
    `configured` marks the one CDC_STREAM_NAME names (the one `cdc binlog` runs)."""
    streams = {saved.pipeline.removeprefix("binlog:"): {
        "stream": saved.pipeline.removeprefix("binlog:"),
        "position": (f"{saved.cursor['file']}:{saved.cursor['pos']}" if saved.cursor
                     else "none (reset: the next run takes a snapshot)"),
        "saved_at": _iso(saved.saved_at_us)}
        for saved in store.latest(wh).values() if saved.kind == "binlog"}
    for name, file, pos, at in wh.query(POSITIONS_BEFORE_SQL):
        streams.setdefault(name, {"stream": name, "position": f"{file}:{pos}",
                                  "saved_at": _iso(at)})
    return [{**streams[name], "configured": name == configured} for name in sorted(streams)]


def _iso(micros_since_epoch: int) -> str:
    return from_micros(int(micros_since_epoch)).isoformat()


def _batch(settings: Settings, now: datetime | None, checkpoint: datetime | None,
           landed: datetime | None) -> dict[str, Any]:
    """The batch's standing; the lag (and whether it is within ETL_MAX_LAG_SECONDS) needs the
    source's clock, so it is None when the source is unreachable."""
    start = start_point(checkpoint, landed)
    lag = round((now - start).total_seconds(), 3) if start and now else None
    return {
        "pipeline": settings.pipeline_name,
        "checkpoint": checkpoint.isoformat() if checkpoint else None,
        "landed": landed.isoformat() if landed else None,
        "next_run": f"incremental from {start.isoformat()}" if start else "full load",
        "lag_seconds": lag,
        "max_lag_seconds": settings.max_lag_seconds,
        "fresh": None if lag is None else lag <= settings.max_lag_seconds,
    }
