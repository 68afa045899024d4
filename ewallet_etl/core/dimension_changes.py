"""Users and merchants change events -> replica rows, pure: validate (`BadEvent` with a
reason; nothing defaulted) and lay out `cdc_users` / `cdc_merchants` rows.

The binlog CDC and the replay of Debezium files both use these rules. created_at/updated_at
become exact microseconds since the epoch: a TIMESTAMP(6) arrives as a naive UTC datetime from
the binlog decoders and the snapshot (read in a UTC session), or as Debezium's ZonedTimestamp,
an ISO-8601 text with its offset; the writer's and this host's time zones play no part.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple, Sequence

import pyarrow as pa

from ewallet_etl.core import events
from ewallet_etl.core.events import BadEvent, ChangeEvent, Op
from ewallet_etl.core.instants import micros
from ewallet_etl.core.value_rules import MAX_ID

# source table -> (replica table, key column, text columns); identifiers from this list only.
DIMENSIONS = {
    "users": ("cdc_users", "user_id", ("name", "email", "city")),
    "merchants": ("cdc_merchants", "merchant_id", ("name", "category", "city")),
}


class DimChange(NamedTuple):
    """One validated users/merchants event as its replica row (`event` last, as changes.Change)."""

    key: str
    version: int
    deleted: int
    id: int
    texts: tuple
    created_at_us: int
    updated_at_us: int
    event: ChangeEvent

    def content(self) -> tuple:
        return tuple(self[:-1])


def to_dim_change(event: ChangeEvent) -> DimChange:
    _, key_column, text_columns = DIMENSIONS[event.table]
    ident = _id(event.key)
    if event.op is Op.DELETE:
        return DimChange(event.key, event.version, 1, ident, (None,) * len(text_columns), 0, 0,
                         event)
    row = event.row
    texts = tuple(_text(row.get(name), name) for name in text_columns)
    return DimChange(event.key, event.version, 0, ident, texts,
                     _micros(row.get("created_at"), "created_at"),
                     _micros(row.get("updated_at"), "updated_at"), event)


def _id(key: str) -> int:
    if not key.isdigit() or not 0 <= int(key) <= MAX_ID:
        raise BadEvent("key is not an id (0..4294967295)")
    return int(key)


def _text(value: Any, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise BadEvent(f"{name} is not a string")
    return value


def _micros(value: Any, name: str) -> int:
    """A naive UTC datetime (binlog, snapshot) or an ISO-8601 text with an offset (Debezium's
    ZonedTimestamp) -> microseconds since the epoch."""
    if isinstance(value, str):
        value = events.iso_time(value, name)
    elif not isinstance(value, datetime) or value.tzinfo is not None:
        raise BadEvent(f"{name} is not a DATETIME")
    since_epoch = micros(value)
    if since_epoch < 0:
        raise BadEvent(f"{name} is before 1970")
    return since_epoch


def dim_arrow(table: str, rows: Sequence[DimChange]) -> pa.Table:
    _, key_column, text_columns = DIMENSIONS[table]
    columns: dict[str, pa.Array] = {key_column: pa.array([r.id for r in rows], pa.uint64())}
    for i, name in enumerate(text_columns):
        columns[name] = pa.array([r.texts[i] for r in rows], pa.string())
    columns["created_at_us"] = pa.array([r.created_at_us for r in rows], pa.uint64())
    columns["updated_at_us"] = pa.array([r.updated_at_us for r in rows], pa.uint64())
    columns["_version"] = pa.array([r.version for r in rows], pa.uint64())
    columns["_deleted"] = pa.array([r.deleted for r in rows], pa.uint8())
    return pa.table(columns)
