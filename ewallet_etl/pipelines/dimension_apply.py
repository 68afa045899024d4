"""Users and merchants changes into `cdc_users` / `cdc_merchants` and, with the star schema on,
`dim_users` / `dim_merchants`: validate (`core/dimension_changes.py`), reduce to the last
version per key, one Arrow insert per table, rejects to `etl_quarantine`. The binlog CDC and
the replay of Debezium files both apply them here; every write is idempotent."""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

from ewallet_etl.audit import count_reasons, quarantine_rows
from ewallet_etl.core.changes import SchemeRefused, event_reject, reduce_changes, rejects_table
from ewallet_etl.core.dimension_changes import DIMENSIONS, DimChange, dim_arrow, to_dim_change
from ewallet_etl.core.events import BadEvent, ChangeEvent, Reject
from ewallet_etl.pipelines import star_apply
from ewallet_etl.warehouse import Warehouse


class Counts(star_apply.Counts, Protocol):
    """What a run counts besides the star's (replay.CdcReport has it all)."""

    feed_star: bool
    batches: int
    events_read: int
    rows_applied: int
    collapsed: int


def apply_dimension(wh: Warehouse, table: str, events: Sequence[ChangeEvent], report: Counts,
                    quarantine_source: str,
                    admit: Callable[[ChangeEvent], DimChange] = to_dim_change) -> None:
    """One micro-batch of `table`'s events (users or merchants). `admit` validates one event
    (the replay checks its version scheme first)."""
    valid: list[DimChange] = []
    star_only: list[DimChange] = []  # refused by the replicas' version scheme only
    rejects: list[Reject] = []
    for event in events:
        try:
            valid.append(admit(event))
        except SchemeRefused as exc:
            rejects.append(event_reject(event, str(exc)))
            try:
                star_only.append(to_dim_change(event))
            except BadEvent:
                pass  # refused on its own too: the reject says enough
        except BadEvent as exc:
            rejects.append(event_reject(event, str(exc)))
    if star_only and report.feed_star:
        star_apply.apply_dimension(wh, table, reduce_changes(star_only).rows, report)
    reduced = reduce_changes(valid)
    rejects += [event_reject(c.event, "conflict: same _version, different content")
                for c in reduced.conflicts]
    if reduced.rows:
        wh.insert(DIMENSIONS[table][0], dim_arrow(table, reduced.rows))
        if report.feed_star:
            star_apply.apply_dimension(wh, table, reduced.rows, report)
    if rejects:
        quarantined = quarantine_rows(rejects_table(rejects), quarantine_source,
                                      report.run_id, report.started_at)
        wh.insert("etl_quarantine", quarantined)
        count_reasons(report.reject_reasons, (reject.reason for reject in rejects))
    report.batches += 1
    report.events_read += len(events)
    report.rows_applied += len(reduced.rows)
    report.collapsed += reduced.collapsed
    report.rejected += len(rejects)
