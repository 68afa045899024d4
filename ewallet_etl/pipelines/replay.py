"""CDC apply: validate -> reduce -> apply change events into `cdc_transactions`.

* validate (`to_change`): a ChangeEvent's row -> the warehouse row it becomes, or `BadEvent`;
  nothing is rounded, clipped or defaulted. A delete becomes a tombstone: its key and version,
  `_deleted = 1`, the other columns zero or empty (its image, if any, is not needed).
* reduce (`reduce_changes`, pure): the highest version of each key in a batch, so one insert
  never carries two versions of a key; exact copies are dropped. Two events of one key with
  the same version and different content are a conflict: both are refused (quarantined) and
  the key falls back to its best lower version. This is decided among the events of one batch
  (`--batch-size`; a file no longer than a batch is checked whole): a conflicting copy that
  arrives in a later batch or run meets ReplacingMergeTree's rule, the last insert wins.
* apply: one bulk Arrow insert per batch, then the batch's rejects to `etl_quarantine`. Every
  write is idempotent (same key, version and values), so a failed run is repaired by running
  it again, and replaying a file, or its events in any order or split, gives the same state.
* one scheme per table (`SchemeGate`, rules in `version_scheme.py`): a replay admits only
  events whose versions are of the scheme `cdc_transactions` is claimed for (the first valid
  event claims an unclaimed table); the others are refused with a reason. Debezium events of
  another database or table are skipped: counted, neither applied nor refused.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Sequence, TextIO

from ewallet_etl.audit import (
    RunRecord,
    close_dead_runs,
    count_reasons,
    quarantine_rows,
    record_run,
    record_start,
)
from ewallet_etl.config import Settings
from ewallet_etl.core import events, version_scheme
from ewallet_etl.core.changes import (
    TABLE,
    Change,
    SchemeGate,
    SchemeRefused,
    event_reject,
    printable,
    reduce_changes,
    rejects_table,
    retraction,
    to_arrow,
    to_change,
)
from ewallet_etl.core.defaults import DEFAULT_BATCH_SIZE
from ewallet_etl.core.dimension_changes import DIMENSIONS, DimChange, to_dim_change
from ewallet_etl.core.errors import one_line, outcome
from ewallet_etl.core.events import BadEvent, BadRow, ChangeEvent, Item, Op, Reject, Skipped
from ewallet_etl.pipelines import star_apply
from ewallet_etl.pipelines.dimension_apply import apply_dimension
from ewallet_etl.pipelines.faults import fault_point
from ewallet_etl.pipelines.progress import Progress
from ewallet_etl.state import lineage as cdc_lineage
from ewallet_etl.state import store
from ewallet_etl.warehouse import Warehouse, open_warehouse

log = logging.getLogger(__name__)

SOURCE = "cdc_events"  # etl_quarantine.source and etl_runs.pipeline of this loader
MAX_ORIGINS = 100  # distinct "db.table" counts kept for the skip log line


# --- the run ----------------------------------------------------------------------------------

class NoChangeEvents(ValueError):
    """The input held no change event (empty, or records none of which parse as one)."""

    def __init__(self, records: int) -> None:
        super().__init__("holds no change event: it is empty" if not records else
                         f"holds no change event: {records} record(s), none parseable (they are "
                         "in etl_quarantine)")


@dataclass
class CdcReport:
    run_id: str
    started_at: datetime
    input_name: str = ""
    events_read: int = 0
    rows_applied: int = 0  # rows inserted: the latest version of each key, per batch
    collapsed: int = 0  # older versions and exact copies, dropped by the reducer
    rejected: int = 0  # quarantined, conflicts included
    conflicts: int = 0
    skipped: int = 0  # Debezium events of another database or table (counted in events_read)
    parsed: int = 0  # records that were change events at all (valid or not, ours or skipped)
    batches: int = 0
    feed_star: bool = True  # also write the star schema (CDC_STAR_SCHEMA)
    star_rows: int = 0  # fact_sales / dim_* rows written (core/star.py)
    star_unversioned: int = 0  # changes with no change time: the replica only took them
    members_written: dict[str, set[int]] = field(default_factory=dict)  # dim -> ids this run
    status: str = "running"
    error: str = ""
    seconds: float = 0.0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    skipped_origins: dict[str, int] = field(default_factory=dict)  # "db.table" -> events

    def summary(self) -> str:
        rate = self.events_read / self.seconds if self.seconds > 0 else 0.0
        return (
            f"cdc run {self.run_id} {self.status}: read={self.events_read} "
            f"applied={self.rows_applied} collapsed={self.collapsed} "
            f"rejected={self.rejected} (conflicts={self.conflicts}) skipped={self.skipped} "
            f"star={self.star_rows} "
            f"batches={self.batches} in {self.seconds:.2f}s ({rate:.0f} events/s)"
        )

    def skip(self, item: Skipped) -> None:
        self.events_read += 1
        self.skipped += 1
        label = item.label[:200]
        if label not in self.skipped_origins and len(self.skipped_origins) >= MAX_ORIGINS:
            label = "(other origins)"  # a file of endless table names must not grow this
        self.skipped_origins[label] = self.skipped_origins.get(label, 0) + 1


def apply_items(wh: Warehouse, items: Iterable[Item], report: CdcReport, batch_size: int,
                gate: SchemeGate | None = None) -> None:
    """Validate (through `gate` when given), cut into batches of `batch_size` records, reduce
    and apply each batch. Users and merchants events (Debezium files carry them) go to their
    replicas and dimensions, before the batch's transactions. Skipped items are only counted.
    An event the gate refuses for its version scheme is the replica's refusal only: the star
    schema, versioned by change time whatever the scheme, still takes it (`star_only`)."""
    admit = gate.admit if gate is not None else to_change
    admit_dimension = gate.admit_dimension if gate is not None else to_dim_change
    progress = Progress("change events read")
    batch = _Batch()
    for item in items:
        if type(item) is ChangeEvent:
            report.parsed += 1
            if item.table in DIMENSIONS:
                batch.dimensions.append(item)
            else:
                batch.add_transaction(item, admit)
        elif type(item) is Skipped:
            report.parsed += 1
            report.skip(item)
            continue
        else:
            batch.rejects.append(item)
        if batch.size() >= batch_size:
            before = report.events_read
            batch.apply(wh, report, admit_dimension)
            progress.add(report.events_read - before)
            batch = _Batch()
            if report.batches == 1:
                fault_point("cdc_after_first_batch")
    if batch.size():
        batch.apply(wh, report, admit_dimension)


@dataclass
class _Batch:
    """The events of one micro-batch, sorted by where they go."""

    changes: list[Change] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    star_only: list[Change] = field(default_factory=list)
    dimensions: list[ChangeEvent] = field(default_factory=list)

    def add_transaction(self, event: ChangeEvent, admit: Callable[[ChangeEvent], Change]) -> None:
        try:
            self.changes.append(admit(event))
        except BadRow as exc:
            self.rejects.append(event_reject(event, str(exc)))
            self.changes.append(retraction(event))
        except SchemeRefused as exc:
            self.rejects.append(event_reject(event, str(exc)))
            try:
                self.star_only.append(to_change(event))
            except BadEvent:
                pass  # refused on its own too: the replica's reject says enough
        except BadEvent as exc:
            self.rejects.append(event_reject(event, str(exc)))

    def size(self) -> int:
        return len(self.changes) + len(self.rejects) + len(self.dimensions)

    def apply(self, wh: Warehouse, report: CdcReport,
              admit_dimension: Callable[[ChangeEvent], DimChange]) -> None:
        for table in DIMENSIONS:  # before the facts: their members are then the real ones
            events_of = [e for e in self.dimensions if e.table == table]
            if events_of:
                apply_dimension(wh, table, events_of, report, SOURCE, admit_dimension)
        if self.changes or self.rejects:
            apply_batch(wh, self.changes, self.rejects, report)
        if self.star_only and report.feed_star:
            star_apply.apply_transactions(wh, reduce_changes(self.star_only).rows, report)


def apply_batch(wh: Warehouse, changes: Sequence[Change], rejects: Sequence[Reject],
                report: CdcReport) -> None:
    """One bulk insert of the reduced batch, then its rejects; both safe to repeat."""
    reduced = reduce_changes(changes)
    refused = list(rejects) + [
        event_reject(c.event, "conflict: same _version, different content")
        for c in reduced.conflicts
    ]
    if reduced.rows:
        rows = to_arrow(reduced.rows)
        wh.insert(TABLE, rows)
        if report.feed_star:
            star_apply.apply_transactions(wh, reduced.rows, report)
    if refused:
        quarantined = quarantine_rows(rejects_table(refused), SOURCE, report.run_id,
                                      report.started_at)
        wh.insert("etl_quarantine", quarantined)
        count_reasons(report.reject_reasons, (reject.reason for reject in refused))
    retracting = sum(1 for c in changes if c.deleted and c.event.op is not Op.DELETE)
    report.batches += 1
    report.events_read += len(changes) + len(rejects) - retracting  # a refused row is both
    report.rows_applied += len(reduced.rows)
    report.collapsed += reduced.collapsed
    report.conflicts += len(reduced.conflicts)
    report.rejected += len(refused)
    log.debug("batch %d: %d events, %d rows, %d rejected", report.batches,
              len(changes) + len(rejects) - retracting, len(reduced.rows), len(refused))


def scheme_gate(wh: Warehouse, claimed_by: str) -> SchemeGate:
    """The gate of one replay run, from the table's claim (LineageError: none can be made)."""
    claim = cdc_lineage.read_claim(wh, TABLE)

    def write(scheme: version_scheme.Scheme) -> None:
        cdc_lineage.write_claim(wh, TABLE, scheme, claimed_by)

    return SchemeGate(claim.scheme if claim else None, write)


def claim_for_binlog(wh: Warehouse, stream: str) -> str | None:
    """For the binlog run, before its snapshot or stream: claim cdc_transactions for binlog
    positions, or say why the run must not start (docs/change-events.md, "Reset")."""
    return cdc_lineage.claim_replica(wh, TABLE, version_scheme.Scheme.BINLOG, f"binlog {stream}")


def run_replay(settings: Settings, stream: TextIO, input_name: str,
               batch_size: int = DEFAULT_BATCH_SIZE, optimize: bool = False,
               source_db: str | None = None) -> CdcReport:
    """Replay one event stream into the warehouse; raises on failure (after the audit row),
    `cdc_lineage.LineageError` when cdc_transactions cannot take any event until a reset.
    Debezium events naming another database than `source_db` (default: the configured
    MYSQL_DATABASE) or another table are skipped."""
    report = CdcReport(run_id=uuid.uuid4().hex[:12], started_at=datetime.now(timezone.utc),
                       input_name=input_name, feed_star=settings.cdc_star_schema)
    clock = time.monotonic()
    database = source_db or settings.mysql_database
    wh = open_warehouse(settings)
    record_start(wh, report.run_id, SOURCE, "replay", report.started_at)
    try:
        close_dead_runs(wh, SOURCE, report.run_id, exclusive=False)
        gate = scheme_gate(wh, f"replay {printable(input_name)[:200]}")
        apply_items(wh, events.read_events(stream, database=database), report, batch_size, gate)
        # A file with no change event is a mistake (exit 2); an empty stdin is a producer with
        # nothing to send. Either way nothing was applied: no hand-off, no state moves.
        if not report.parsed and (report.events_read or input_name != "-"):
            raise NoChangeEvents(report.events_read)
        if report.parsed:
            store.note_handoff(wh, SOURCE, "replay", report.run_id)
            store.save(wh, SOURCE, "replay", {"input": printable(input_name)[:200],
                                              "events": report.events_read,
                                              "rows": report.rows_applied},
                       printable(input_name)[:200], report.run_id)
        if optimize:  # housekeeping only: reads are right without it (FINAL in the view)
            wh.execute(f"OPTIMIZE TABLE analytics_dw.{TABLE} FINAL")
        report.status = "completed_with_rejects" if report.rejected else "success"
    except BaseException as exc:  # Interrupted (a signal) too: the audit row says so
        report.status, report.error = outcome(exc), one_line(exc)
        raise
    finally:
        report.seconds = time.monotonic() - clock
        _audit(wh, report)
        wh.close()
    if report.skipped:
        log.info("skipped %d events of other databases or tables (not %s.%s): %s",
                 report.skipped, database, version_scheme.REPLICATED_TABLE,
                 ", ".join(f"{k}={v}" for k, v in sorted(report.skipped_origins.items())))
    if report.reject_reasons:
        log.warning("quarantined %d events: %s", report.rejected, report.reject_reasons)
    return report


def _audit(wh: Warehouse, report: CdcReport) -> None:
    record_run(wh, RunRecord(
        run_id=report.run_id, pipeline=SOURCE, mode="replay", started_at=report.started_at,
        window_from=printable(report.input_name), window_to=f"skipped={report.skipped}",
        rows_read=report.events_read, rows_loaded=report.rows_applied,
        rows_rejected=report.rejected, status=report.status, error=report.error,
        seconds=report.seconds,
    ))
