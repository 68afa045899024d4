"""`ewallet-etl status`: where every pipeline stands, read-only.

Per pipeline: its kind; the batch's checkpoint in the source and its mark in this warehouse
(and the lag: the source's clock minus the point the next run starts from); the binlog
streams' saved positions and the source's current binlog end; the last runs and their
outcome; the quarantined rows per source. Nothing is written.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from ewallet_etl.config import Settings
from ewallet_etl.core.instants import from_micros
from ewallet_etl.core.window import start_point
from ewallet_etl.sources import mysql as source_mysql
from ewallet_etl.state import store
from ewallet_etl.state.checkpoint import read_checkpoint, read_landed
from ewallet_etl.warehouse import Warehouse, open_warehouse

LAST_RUNS = 5
RUNS_SQL = """
SELECT pipeline, mode, status, toString(started_at), rows_read, rows_loaded, rows_rejected,
       error
FROM analytics_dw.etl_runs
ORDER BY started_us DESC, finished_at DESC
LIMIT {limit:UInt32}
"""
# Runs that started and have not ended: going now, or dead without closing (not yet seen by
# a later run of their pipeline, which closes them as `killed`).
OPEN_RUNS_SQL = """
SELECT pipeline, run_id, mode, toString(started_at), host, pid
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
       toString(argMax(saved_at, _version))
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

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def to_text(self) -> str:
        b = self.batch
        lag = "-" if b["lag_seconds"] is None else f"{b['lag_seconds']} s"
        lines = [f"source     {self.source} (clock {self.source_now})",
                 f"warehouse  {self.warehouse}",
                 f"batch      pipeline {b['pipeline']}: checkpoint {b['checkpoint'] or 'none'}, "
                 f"landed here {b['landed'] or 'nothing'}; next run {b['next_run']}, lag {lag}"]
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
    conn = source_mysql.connect(settings)
    wh = open_warehouse(settings)
    try:
        now = source_mysql.db_clock(conn)
        checkpoint = read_checkpoint(conn, settings.pipeline_name)
        binlog_end = source_mysql.binlog_end(conn)
        return Status(
            source=source_mysql.where(settings), warehouse=settings.warehouse.describe(),
            source_now=now.isoformat(),
            batch=_batch(settings, wh, now, checkpoint), binlog_end=binlog_end,
            streams=_streams(wh),
            states=[{"pipeline": saved.pipeline, "kind": saved.kind, "source": saved.source,
                     "cursor": saved.cursor, "at": store.describe(saved.kind, saved.cursor),
                     "saved_at": _iso(saved.saved_at_us)}
                    for saved in sorted(store.latest(wh).values(), key=lambda x: x.pipeline)],
            handoffs=[{"at": _iso(h["at_us"]),
                       "from": f"{h['from']['pipeline']} ({h['from']['kind']}, "
                               f"{store.describe(h['from']['kind'], h['from']['cursor'])})",
                       "to": f"{h['to']['pipeline']} ({h['to']['kind']})"}
                      for h in store.handoffs(wh, LAST_RUNS)],
            last_runs=[dict(zip(("pipeline", "mode", "status", "started_at", "rows_read",
                                 "rows_loaded", "rows_rejected", "error"), row, strict=True))
                       for row in wh.query(RUNS_SQL, {"limit": LAST_RUNS})],
            open_runs=[dict(zip(("pipeline", "run_id", "mode", "started_at", "host", "pid"),
                                row, strict=True))
                       for row in wh.query(OPEN_RUNS_SQL, {"limit": LAST_RUNS})],
            quarantined={source: int(n) for source, n in wh.query(QUARANTINE_SQL)},
        )
    finally:
        conn.close()
        wh.close()


def _streams(wh: Warehouse) -> list[dict[str, Any]]:
    """Every binlog stream's position: its etl_state save, else its cdc_state row (older)."""
    streams = {saved.pipeline.removeprefix("binlog:"): {
        "stream": saved.pipeline.removeprefix("binlog:"),
        "position": (f"{saved.cursor['file']}:{saved.cursor['pos']}" if saved.cursor
                     else "none (reset: the next run takes a snapshot)"),
        "saved_at": _iso(saved.saved_at_us)}
        for saved in store.latest(wh).values() if saved.kind == "binlog"}
    for name, file, pos, at in wh.query(POSITIONS_BEFORE_SQL):
        streams.setdefault(name, {"stream": name, "position": f"{file}:{pos}", "saved_at": at})
    return [streams[name] for name in sorted(streams)]


def _iso(micros_since_epoch: int) -> str:
    return from_micros(int(micros_since_epoch)).isoformat()


def _batch(settings: Settings, wh: Warehouse, now: datetime,
           checkpoint: datetime | None) -> dict[str, Any]:
    landed = read_landed(wh, settings.pipeline_name, settings.mysql_database)
    start = start_point(checkpoint, landed)
    return {
        "pipeline": settings.pipeline_name,
        "checkpoint": checkpoint.isoformat() if checkpoint else None,
        "landed": landed.isoformat() if landed else None,
        "next_run": f"incremental from {start.isoformat()}" if start else "full load",
        "lag_seconds": round((now - start).total_seconds(), 3) if start else None,
    }
