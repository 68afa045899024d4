"""Change streams into the star schema: the binlog CDC and the event replay write
`fact_sales`, `dim_users` and `dim_merchants` as the batch load does (rules: `core/star.py`),
next to their replica tables, in the same micro-batch. Every insert is idempotent (versions),
so a batch applied again after a crash changes nothing."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol, Sequence

import pyarrow as pa

from ewallet_etl.audit import count_reasons, quarantine_rows, refusals_table
from ewallet_etl.core import star, transform
from ewallet_etl.core.changes import Change, event_reject, to_change
from ewallet_etl.core.events import BadEvent, ChangeEvent, Op
from ewallet_etl.warehouse import Warehouse

log = logging.getLogger(__name__)


class Counts(Protocol):
    """What a run counts (replay.CdcReport has it all)."""

    run_id: str
    started_at: datetime
    rejected: int
    reject_reasons: dict[str, int]
    star_rows: int
    star_unversioned: int
    members_written: dict[str, set[int]]


MEMBER_IDS = {"dim_users": "user_id", "dim_merchants": "merchant_id"}
QUARANTINE_SOURCE = "transactions"  # the batch's: the same rule refuses the same version


def apply_transactions(wh: Warehouse, changes: Sequence[Change], report: Counts) -> None:
    """The reduced changes of one micro-batch (one per key) into fact_sales."""
    rows, gone_keys, gone_versions, refused_rows = [], [], [], []
    for change in changes:
        event = change.event
        if change.deleted:  # a delete, or a row the replica refused: a tombstone
            version = (star.delete_version(event) if event.op is Op.DELETE
                       else star.change_time_us(event))
        else:
            version = star.change_time_us(event)
        if version is None:
            report.star_unversioned += 1
            continue
        if change.deleted:
            gone_keys.append(change.key)
            gone_versions.append(version)
            if event.op is not Op.DELETE:  # refused: on record where reconcile looks for it
                refused_rows.append((change.key, version, _reason(event),
                                     event_reject(event, "").raw))
        else:
            rows.append((change.key, change.user_id, change.merchant_id, change.amount,
                         change.status, change.transaction_time, version))
    if rows:
        source = star.source_facts(rows)
        facts, rejects = transform.transform_transactions(source)
        refused = set(rejects.column("record_key").to_pylist())
        for table, members in star.members_for(source, refused).items():
            _insert_new_members(wh, table, members, report.members_written)
        if rejects.num_rows:
            wh.insert("etl_quarantine", quarantine_rows(rejects, QUARANTINE_SOURCE,
                                                        report.run_id, report.started_at))
            wh.insert("fact_sales", transform.retractions(rejects))
            count_reasons(report.reject_reasons, rejects.column("reason").to_pylist())
            report.rejected += rejects.num_rows
        wh.insert("fact_sales", facts)
        report.star_rows += facts.num_rows
    if gone_keys:
        wh.insert("fact_sales", star.tombstones(gone_keys, gone_versions))
        report.star_rows += len(gone_keys)
    if refused_rows:  # counted already, by the replica's apply
        wh.insert("etl_quarantine", quarantine_rows(refusals_table(refused_rows),
                                                    QUARANTINE_SOURCE, report.run_id,
                                                    report.started_at))


def _insert_new_members(wh: Warehouse, table: str, members: pa.Table,
                        written: dict[str, set[int]]) -> None:
    """Inferred members, before the facts (every key resolves), but only for the ids this run
    has not written a member of yet: after one (inferred or real) another adds nothing, and
    the insert is the larger part of a small micro-batch's cost."""
    done = written.setdefault(table, set())
    ids = members.column(MEMBER_IDS[table]).to_pylist()
    new = [i not in done for i in ids]
    if not any(new):
        return
    wh.insert(table, members if all(new) else members.filter(pa.array(new, pa.bool_())))
    done.update(ids)


def _reason(event: ChangeEvent) -> str:
    """Why the replica refused this row (the same value rules as the batch)."""
    try:
        to_change(event)
    except BadEvent as exc:  # BadRow included
        return str(exc)
    return "refused"


def apply_dimension(wh: Warehouse, table: str, changes: Sequence[Any],
                    report: Counts) -> None:
    """The reduced users or merchants changes (binlog_apply.DimChange) of one micro-batch into
    their dimension; a delete leaves the member in place, as the batch load does."""
    rows = [(c.id, c.texts, c.updated_at_us) for c in changes if not c.deleted]
    if rows:
        dim = "dim_users" if table == "users" else "dim_merchants"
        wh.insert(dim, star.dimension_rows(table, rows))
        report.members_written.setdefault(dim, set()).update(r[0] for r in rows)
        report.star_rows += len(rows)
