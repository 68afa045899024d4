"""Where each binlog stream stands: its position in `analytics_dw.cdc_state`, saved right after
the micro-batch it covers landed (data first, position second; see core/binlog_position.py for
the rules of which positions may be saved)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow as pa

from ewallet_etl.core.binlog_position import Position
from ewallet_etl.warehouse import Warehouse

READ_STATE_SQL = """
SELECT argMax(log_file, _version), argMax(log_pos, _version), max(_version)
FROM analytics_dw.cdc_state
WHERE stream = {stream:String}
GROUP BY stream
"""


@dataclass(frozen=True)
class SavedState:
    position: Position
    version: int


def read_position(wh: Warehouse, stream: str) -> SavedState | None:
    rows = wh.query(READ_STATE_SQL, {"stream": stream})
    if not rows:
        return None
    file, pos, state_version = rows[0]
    return SavedState(Position.of(str(file), int(pos)), int(state_version))


def save_position(wh: Warehouse, stream: str, position: Position, server_id: int,
                  previous: int = 0) -> int:
    """Append the stream's new position; its version is the wall clock in microseconds but
    always above the previous one, so the newest save wins even if the binlog was reset."""
    state_version = max(time.time_ns() // 1000, previous + 1)
    wh.insert("cdc_state", pa.table({
        "stream": pa.array([stream], pa.string()),
        "log_file": pa.array([position.file], pa.string()),
        "log_pos": pa.array([position.pos], pa.uint64()),
        "server_id": pa.array([server_id], pa.uint32()),
        "saved_at": pa.array([datetime.now(timezone.utc)], pa.timestamp("s", tz="UTC")),
        "_version": pa.array([state_version], pa.uint64()),
    }))
    return state_version
