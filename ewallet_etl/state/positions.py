"""Where each binlog stream stands: its position, saved in the one state table
(`state/store.py`, kind `binlog`, pipeline `binlog:<stream>`) right after the micro-batch it
covers landed (data first, position second; see core/binlog_position.py for the rules of which
positions may be saved). Warehouses from before that table keep theirs in `cdc_state`, still
read when the stream has no save in `etl_state` yet."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ewallet_etl.core.binlog_position import Position
from ewallet_etl.state import store
from ewallet_etl.warehouse import Warehouse

READ_SQL = """
SELECT argMax(cursor, _version), max(_version) FROM analytics_dw.etl_state
WHERE pipeline = {pipeline:String} AND kind = 'binlog'
GROUP BY pipeline
"""
READ_BEFORE_SQL = """
SELECT argMax(log_file, _version), argMax(log_pos, _version), max(_version)
FROM analytics_dw.cdc_state
WHERE stream = {stream:String}
GROUP BY stream
"""


@dataclass(frozen=True)
class SavedState:
    position: Position | None  # None: reset, the next run takes a snapshot
    version: int


def pipeline_name(stream: str) -> str:
    """The pipeline name of a binlog stream (in etl_state and etl_runs)."""
    return f"binlog:{stream}"


def read_position(wh: Warehouse, stream: str) -> SavedState | None:
    rows = wh.query(READ_SQL, {"pipeline": pipeline_name(stream)})
    if rows:
        cursor, version = json.loads(rows[0][0]), int(rows[0][1])
        if not cursor:
            return SavedState(None, version)
        return SavedState(Position.of(str(cursor["file"]), int(cursor["pos"])), version)
    before = wh.query(READ_BEFORE_SQL, {"stream": stream})
    if not before:
        return None
    file, pos, version = before[0]
    return SavedState(Position.of(str(file), int(pos)), int(version))


def save_position(wh: Warehouse, stream: str, position: Position, server_id: int,
                  previous: int = 0, source: str = "", run_id: str = "") -> int:
    """Append the stream's new position; its version is the wall clock in microseconds but
    always above the previous one, so the newest save wins even if the binlog was reset."""
    return store.save(wh, pipeline_name(stream), "binlog",
                      {"file": position.file, "pos": position.pos, "server_id": server_id},
                      source, run_id, previous)


def forget_positions(wh: Warehouse, run_id: str) -> list[str]:
    """Every binlog stream back to "no position" (an empty cursor): the next run of each takes
    a snapshot. Returns the pipelines reset."""
    saves = store.latest(wh)
    reset = [p for p, saved in saves.items() if saved.kind == "binlog" and saved.cursor]
    for pipeline in reset:
        store.save(wh, pipeline, "binlog", {}, "", run_id, saves[pipeline].version)
    return reset
