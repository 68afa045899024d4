"""Binlog CDC, warehouse side: apply change events of the three source tables.

* transactions -> `cdc_transactions` through `cdc.py` (its validation, reducer, insert and
  quarantine: one apply path for the JSON replay and the binlog).
* users, merchants -> `cdc_users`, `cdc_merchants` here, the same way: validate (`BadEvent`
  with a reason; nothing defaulted), reduce to the last version per key (`reduce_changes`),
  one Arrow insert per table, rejects to `etl_quarantine`. created_at/updated_at are kept as
  exact microseconds since the epoch: TIMESTAMP(6) columns arrive as naive UTC datetimes from
  both the binlog decoders and the snapshot (read in a UTC session), so the writer's and this
  host's time zones play no part; a DATETIME(6) is read as UTC wall-clock time.

A delete is a tombstone row (`_deleted` = 1) at the delete's version. `tombstone_older` ends
rows older than a version: those a re-snapshot did not find (the source deleted them while
the stream was not running), and every row a replicated TRUNCATE removed.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Sequence

import pyarrow as pa

from ewallet_etl.audit import count_reasons, quarantine_rows
from ewallet_etl.core.changes import (
    TABLE,
    event_reject,
    reduce_changes,
    rejects_table,
    retraction,
    to_change,
)
from ewallet_etl.core.events import BadEvent, BadRow, ChangeEvent, Op, Reject
from ewallet_etl.core.instants import micros
from ewallet_etl.pipelines import replay as cdc
from ewallet_etl.pipelines import star_apply
from ewallet_etl.warehouse import Warehouse

MICROSECOND = timedelta(microseconds=1)
MAX_ID = (1 << 32) - 1

# source table -> (replica table, key column, text columns); identifiers from this list only.
DIMENSIONS = {
    "users": ("cdc_users", "user_id", ("name", "email", "city")),
    "merchants": ("cdc_merchants", "merchant_id", ("name", "category", "city")),
}
REPLICAS = {"transactions": (TABLE, "transaction_id"),
            **{t: (r, k) for t, (r, k, _) in DIMENSIONS.items()}}


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
    if not isinstance(value, datetime) or value.tzinfo is not None:
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


def apply(wh: Warehouse, changes: Sequence[ChangeEvent],
          report: cdc.CdcReport) -> None:
    """Apply one micro-batch: every table's reduced rows, then its rejects (all idempotent)."""
    by_table: dict[str, list[ChangeEvent]] = defaultdict(list)
    for event in changes:
        by_table[event.table].append(event)
    for table, events in by_table.items():
        if table == "transactions":
            valid, rejects = _validate(events, to_change)
            cdc.apply_batch(wh, valid, rejects, report)
        else:
            _apply_dimension(wh, table, events, report)


def _validate(events: Sequence[ChangeEvent], convert: Any) -> tuple[list, list[Reject]]:
    valid, rejects = [], []
    for event in events:
        try:
            valid.append(convert(event))
        except BadRow as exc:  # a refused transaction row retracts the key's older versions
            rejects.append(event_reject(event, str(exc)))
            valid.append(retraction(event))
        except BadEvent as exc:
            rejects.append(event_reject(event, str(exc)))
    return valid, rejects


def _apply_dimension(wh: Warehouse, table: str, events: Sequence[ChangeEvent],
                     report: cdc.CdcReport) -> None:
    valid, rejects = _validate(events, to_dim_change)
    reduced = reduce_changes(valid)
    rejects += [event_reject(c.event, "conflict: same _version, different content")
                for c in reduced.conflicts]
    replica = DIMENSIONS[table][0]
    if reduced.rows:
        rows = dim_arrow(table, reduced.rows)
        wh.insert(replica, rows)
        if report.feed_star:
            star_apply.apply_dimension(wh, table, reduced.rows, report)
    if rejects:
        quarantined = quarantine_rows(rejects_table(rejects), f"binlog_{table}",
                                      report.run_id, report.started_at)
        wh.insert("etl_quarantine", quarantined)
        count_reasons(report.reject_reasons, (reject.reason for reject in rejects))
    report.batches += 1
    report.events_read += len(events)
    report.rows_applied += len(reduced.rows)
    report.collapsed += reduced.collapsed
    report.rejected += len(rejects)


STALE_SQL = """
SELECT toString({key})
FROM (SELECT {key}, _version, _deleted FROM analytics_dw.{replica} FINAL)
WHERE _deleted = 0 AND _version < {{snapshot:UInt64}}
"""


def tombstone_older(wh: Warehouse, table: str, snapshot_version: int,
                    report: cdc.CdcReport) -> int:
    """Tombstone the current replica rows older than `snapshot_version`, at that version:
    rows a re-snapshot did not contain, or every row before a TRUNCATE (its version)."""
    replica, key = REPLICAS[table]
    stale = wh.query(STALE_SQL.format(key=key, replica=replica), {"snapshot": snapshot_version})
    if stale:
        apply(wh, [ChangeEvent(Op.DELETE, table, str(k), {}, snapshot_version) for (k,) in stale],
              report)
    return len(stale)
