"""One state model for every pipeline: `analytics_dw.etl_state`, a kind and a cursor each.

Every pipeline that loads the warehouse saves where it stands in the same table, the same way:
one appended row per save, right after the data it covers landed (data first, state second),
so a crash between the two leaves the older state and the data is loaded again, idempotently.
The newest save of a pipeline (highest `_version`, a clock that never goes back) is its state.

| kind      | pipeline            | cursor (JSON)                          | source                |
| --------- | ------------------- | -------------------------------------- | --------------------- |
| `batch`   | ETL_PIPELINE_NAME   | `{"watermark_us"}`: the window's end   | the source database   |
| `binlog`  | `binlog:<stream>`   | `{"file", "pos", "server_id"}`         | host:port/database    |
| `replay`  | `cdc_events`        | `{"input", "events", "rows"}`          | the input's name      |
| `handoff` | the pipeline taking | `{"from": {...}, "to": {...}}`         | -                     |

A **hand-off** is recorded when a pipeline starts feeding the star schema after another one
saved last: the batch after the binlog, the binlog after the batch. Its row names both
pipelines and their cursors at that moment: where one stopped and the other took over.

A binlog stream's state may be an empty cursor `{}` (written by `cdc reset`): no position,
the next run takes a snapshot. Warehouses written before this table existed keep their old
state tables (`etl_watermarks`, `cdc_state`), which are still read.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ewallet_etl.core.instants import from_micros
from ewallet_etl.warehouse import Warehouse

log = logging.getLogger(__name__)

TABLE = "etl_state"
STAR_KINDS = ("batch", "binlog", "replay")  # the kinds that feed the star schema
LATEST_SQL = """
SELECT pipeline, argMax(kind, _version), argMax(source, _version), argMax(cursor, _version),
       max(_version), argMax(saved_at_us, _version)
FROM analytics_dw.etl_state
WHERE kind != 'handoff'
GROUP BY pipeline
"""
HANDOFFS_SQL = """
SELECT pipeline, cursor, saved_at_us FROM analytics_dw.etl_state
WHERE kind = 'handoff' ORDER BY saved_at_us DESC LIMIT {limit:UInt32}
"""


@dataclass(frozen=True)
class Saved:
    pipeline: str
    kind: str
    source: str
    cursor: dict[str, Any]
    version: int
    saved_at_us: int


def save(wh: Warehouse, pipeline: str, kind: str, cursor: dict[str, Any], source: str,
         run_id: str, previous: int = 0) -> int:
    """Append a save; returns its version (above `previous`, so the newest always wins). The
    cursor is compact JSON: ClickHouse's visitParamExtract* (18.16 has no JSONExtract) read
    `"name":value` without spaces."""
    now = time.time_ns() // 1000
    version = max(now, previous + 1)
    wh.insert(TABLE, pa.table({
        "pipeline": [pipeline], "kind": [kind], "source": [source],
        "cursor": [json.dumps(cursor, sort_keys=True, separators=(",", ":"))],
        "run_id": [run_id],
        "saved_at_us": pa.array([now], pa.uint64()),
        "_version": pa.array([version], pa.uint64()),
    }))
    return version


def latest(wh: Warehouse) -> dict[str, Saved]:
    """Every pipeline's newest save (hand-offs aside)."""
    return {p: Saved(p, kind, source, json.loads(cursor), int(version), int(at))
            for p, kind, source, cursor, version, at in wh.query(LATEST_SQL)}


def note_handoff(wh: Warehouse, pipeline: str, kind: str, run_id: str) -> Saved | None:
    """Record a hand-off if another pipeline fed the star schema after this one last saved (or
    this one never did); returns the pipeline handed over from."""
    saves = latest(wh)
    mine = saves.get(pipeline)
    newer = [s for p, s in saves.items()
             if p != pipeline and s.kind in STAR_KINDS
             and (mine is None or s.saved_at_us > mine.saved_at_us)]
    if not newer:
        return None
    last = max(newer, key=lambda s: s.saved_at_us)
    to = {"pipeline": pipeline, "kind": kind, "cursor": mine.cursor if mine else None}
    save(wh, pipeline, "handoff",
         {"from": {"pipeline": last.pipeline, "kind": last.kind, "cursor": last.cursor},
          "to": to}, "", run_id)
    log.info("hand-off: %s (%s, at %s) -> %s (%s, from %s)", last.pipeline, last.kind,
             describe(last.kind, last.cursor), pipeline, kind,
             describe(kind, mine.cursor) if mine else "its start")
    return last


def handoffs(wh: Warehouse, limit: int = 5) -> list[dict[str, Any]]:
    return [{"at_us": int(at), "to": p, **json.loads(cursor)}
            for p, cursor, at in wh.query(HANDOFFS_SQL, {"limit": limit})]


def describe(kind: str, cursor: dict[str, Any] | None) -> str:
    """A cursor as people read it."""
    if not cursor:
        return "nothing yet"
    if kind == "batch":
        return f"watermark {from_micros(int(cursor['watermark_us'])).isoformat()}"
    if kind == "binlog":
        return f"position {cursor['file']}:{cursor['pos']}"
    # prose, never JSON (status --json would nest JSON in a string); long tokens cut
    return ", ".join(f"{key} {str(value)[:40]}" for key, value in sorted(cursor.items()))
