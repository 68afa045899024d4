"""Binlog CDC, warehouse side: apply change events of the three source tables.

* transactions -> `cdc_transactions` through `cdc.py` (its validation, reducer, insert and
  quarantine: one apply path for the JSON replay and the binlog).
* users, merchants -> `cdc_users`, `cdc_merchants` through `dimension_apply.py`, the same
  way (the replay of Debezium files uses it too).

A delete is a tombstone row (`_deleted` = 1) at the delete's version. `tombstone_older` ends
rows older than a version: those a re-snapshot did not find (the source deleted them while
the stream was not running), and every row a replicated TRUNCATE removed.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

from ewallet_etl.core.changes import TABLE, event_reject, retraction, to_change
from ewallet_etl.core.dimension_changes import DIMENSIONS
from ewallet_etl.core.events import BadEvent, BadRow, ChangeEvent, Op, Reject
from ewallet_etl.pipelines import replay as cdc
from ewallet_etl.pipelines.dimension_apply import apply_dimension
from ewallet_etl.warehouse import Warehouse

REPLICAS = {"transactions": (TABLE, "transaction_id"),
            **{t: (r, k) for t, (r, k, _) in DIMENSIONS.items()}}


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
            apply_dimension(wh, table, events, report, f"binlog_{table}")


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
