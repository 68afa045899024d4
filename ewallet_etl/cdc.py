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

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from hashlib import blake2b
from typing import Any, Callable, Iterable, NamedTuple, Sequence, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import cdc_lineage, events, transform, version_scheme
from .batch import fault_point, open_warehouse, quarantine_rows
from .config import Settings
from .events import BadEvent, BadRow, ChangeEvent, Item, Op, Reject, Skipped
from .retry import with_retries
from .audit import RunRecord, record_run
from .warehouse import Warehouse

log = logging.getLogger(__name__)

SOURCE = "cdc_events"  # etl_quarantine.source and etl_runs.pipeline of this loader
TABLE = "cdc_transactions"
DEFAULT_BATCH_SIZE = 20_000
MAX_ID = (1 << 32) - 1  # the source's INT UNSIGNED
MAX_DATETIME = (1 << 32) - 1  # ClickHouse DateTime: 1970-01-01 .. 2106-02-07 06:28:15 UTC
MAX_RAW_CHARS = 65_536  # quarantined text is cut here (a broken array can swallow the rest)
MAX_ORIGINS = 100  # distinct "db.table" counts kept for the skip log line
CENT = Decimal("0.01")
ZERO = Decimal(0)
SECOND = timedelta(seconds=1)


class Change(NamedTuple):
    """One validated event, as the `cdc_transactions` row it becomes (`event` last)."""

    key: str
    version: int
    deleted: int
    user_id: int
    merchant_id: int
    amount: Decimal
    status: str
    transaction_time: int  # seconds since the epoch
    event: ChangeEvent

    def content(self) -> tuple:
        return tuple(self[:-1])


def to_change(event: ChangeEvent) -> Change:
    """Validate an event against the warehouse columns; BadEvent names the first problem."""
    if event.table != events.DEFAULT_TABLE:
        raise BadEvent("table is not replicated")
    if not 0 <= event.version <= events.MAX_UINT64:
        raise BadEvent("_version out of UInt64 range")
    if event.op is Op.DELETE:
        return retraction(event)
    row = event.row
    try:
        return Change(event.key, event.version, 0, _id(row, "user_id"),
                      _id(row, "merchant_id"), _amount(row.get("amount")),
                      _status(row.get("status")), _seconds(row.get("transaction_time")), event)
    except BadRow:
        raise
    except BadEvent as exc:
        raise BadRow(str(exc)) from None


def retraction(event: ChangeEvent) -> Change:
    """The tombstone of `event`'s key at its version: a delete, or a refused row (BadRow)."""
    return Change(event.key, event.version, 1, 0, 0, ZERO, "", 0, event)


def _id(row: Any, name: str) -> int:
    value = row.get(name)
    if value is None:
        raise BadEvent(f"missing {name}")
    if type(value) is not int:
        raise BadEvent(f"{name} is not an integer")
    if not 0 <= value <= MAX_ID:
        raise BadEvent(f"{name} out of range (0..4294967295)")
    return value


def _amount(value: Any) -> Decimal:
    if value is None:
        raise BadEvent("missing amount")
    if isinstance(value, str) and _is_decimal_text(value):
        value = Decimal(value)
    elif type(value) is int:
        value = Decimal(value)
    if not isinstance(value, Decimal) or not value.is_finite():
        raise BadEvent("amount is not a decimal number")
    if value < 0:
        raise BadEvent("amount is negative")
    if value > transform.MAX_AMOUNT:
        raise BadEvent("amount exceeds Decimal(18, 2)")
    if value != value.quantize(CENT):
        raise BadEvent("amount has more than 2 decimals")
    return value


def _is_decimal_text(text: str) -> bool:
    """A plain decimal text: optional minus, digits, optional fraction (no exponent, no spaces)."""
    whole, _, fraction = text.removeprefix("-").partition(".")
    return whole.isdigit() and whole.isascii() and (
        fraction == "" and "." not in text or fraction.isdigit() and fraction.isascii())


def _status(value: Any) -> str:
    if value is None:
        raise BadEvent("missing status")
    if not isinstance(value, str) or value not in transform.KNOWN_STATUSES:
        raise BadEvent("unknown status")
    return value


def _seconds(value: Any) -> int:
    """transaction_time -> whole seconds; a naive datetime (binlog) is UTC, a text needs Z."""
    if value is None:
        raise BadEvent("missing transaction_time")
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    else:
        moment = events.iso_time(value, "transaction_time")
    if moment.microsecond:
        raise BadEvent("transaction_time has fractions of a second")
    seconds = (moment - events.EPOCH) // SECOND
    if not 0 <= seconds <= MAX_DATETIME:
        raise BadEvent("transaction_time outside DateTime range (1970-01-01..2106-02-07)")
    return seconds


@dataclass
class Reduced:
    rows: list[Change]  # one per key: its highest version that is not in conflict
    conflicts: list[Change]  # refused: same key and version as a different event (one each)
    collapsed: int  # events dropped: older versions of a key and exact copies


def reduce_changes(changes: Sequence[Change]) -> Reduced:
    """The last change per key, the same whatever the order of `changes` (pure)."""
    latest: dict[str, Change] = {}
    tied: set[str] = set()
    for change in changes:
        best = latest.get(change.key)
        if best is None or change.version > best.version:
            latest[change.key] = change
        elif change.version == best.version and change.content() != best.content():
            tied.add(change.key)
    conflicts: list[Change] = []
    if tied:
        # Rare path: settle the tied keys from all their events. A tie at a key's top version
        # is always seen above (its copies meet as the best, in any order); lower ties may or
        # may not be, and `_untie` gives the same answer either way.
        history: dict[str, list[Change]] = {key: [] for key in tied}
        for change in changes:
            if change.key in history:
                history[change.key].append(change)
        for key, versions in history.items():
            winner, refused = _untie(versions)
            conflicts += refused
            if winner is None:
                del latest[key]
            else:
                latest[key] = winner
    rows = list(latest.values())
    return Reduced(rows, conflicts, len(changes) - len(rows) - len(conflicts))


def _untie(versions: list[Change]) -> tuple[Change | None, list[Change]]:
    """(the highest version whose copies all agree, one of each event refused above it)."""
    refused: list[Change] = []
    for version in sorted({c.version for c in versions}, reverse=True):
        distinct = {c.content(): c for c in versions if c.version == version}
        if len(distinct) == 1:
            return next(iter(distinct.values())), refused
        refused += sorted(distinct.values(), key=_canonical)
    return None, refused


def _canonical(change: Change) -> str:
    return repr(change.content())


# --- rows for the warehouse -------------------------------------------------------------------

def to_arrow(rows: Sequence[Change]) -> pa.Table:
    """Reduced changes -> `cdc_transactions` columns, built column by column (no per-row insert)."""
    keys, versions, deleted, users, merchants, amounts, statuses, times, _ = zip(*rows)
    amount = pa.array(amounts, transform.WAREHOUSE_AMOUNT)
    gone = np.asarray(deleted, dtype=np.uint8)
    category = pc.if_else(pa.array(gone.astype(bool)), "", transform.amount_categories(amount))
    return pa.table({
        "transaction_id": pa.array(keys, pa.string()),
        "user_id": pa.array(users, pa.uint64()),
        "merchant_id": pa.array(merchants, pa.uint64()),
        "amount": amount,
        "amount_category": category,
        "status": pa.array(statuses, pa.string()),
        "transaction_time": pa.array(times, pa.int64()).cast(transform.UTC_SECONDS),
        "_version": pa.array(versions, pa.uint64()),
        "_deleted": gone,
    })


def event_reject(event: ChangeEvent, reason: str) -> Reject:
    """A valid-looking event refused after parsing; its text, or a rendering of it."""
    raw = event.raw or json.dumps(
        {"op": event.op.value, "table": event.table, "key": event.key,
         "_version": event.version, "row": dict(event.row)}, default=str, ensure_ascii=False)
    return Reject(event.key, event.version, reason, raw)


def rejects_table(rejects: Sequence[Reject]) -> pa.Table:
    """Rejects -> (record_key, _version, reason, raw) for `batch.quarantine_rows`.

    record_key is `<transaction_id>#<digest of the raw text>`: etl_quarantine keeps one row per
    (source, record_key, _version), so distinct bad records never collapse into one, while the
    same record quarantined again by a replay does not pile up.
    """
    raws = [_printable(r.raw) for r in rejects]
    keys = [f"{r.key}#{blake2b(raw.encode(), digest_size=6).hexdigest()}"
            for r, raw in zip(rejects, raws)]
    return pa.table({
        "record_key": pa.array(keys, pa.string()),
        "_version": pa.array([r.version for r in rejects], pa.uint64()),
        "reason": pa.array([r.reason for r in rejects], pa.string()),
        "raw": pa.array(raws, pa.string()),
    })


def _printable(raw: str) -> str:
    """Valid UTF-8 for a String column: bytes that were not UTF-8 show as \\udcXX escapes."""
    text = raw if len(raw) <= MAX_RAW_CHARS else raw[:MAX_RAW_CHARS] + "...[cut]"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# --- the run ----------------------------------------------------------------------------------

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
    batches: int = 0
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
            f"batches={self.batches} in {self.seconds:.2f}s ({rate:.0f} events/s)"
        )

    def skip(self, item: Skipped) -> None:
        self.events_read += 1
        self.skipped += 1
        label = item.label[:200]
        if label not in self.skipped_origins and len(self.skipped_origins) >= MAX_ORIGINS:
            label = "(other origins)"  # a file of endless table names must not grow this
        self.skipped_origins[label] = self.skipped_origins.get(label, 0) + 1


class SchemeGate:
    """Admits into cdc_transactions only events of the scheme that feeds it. An unclaimed
    table is claimed (through `claim`, before the batch is inserted) by the first event that
    passes validation, so an invalid event never decides the scheme."""

    def __init__(self, claimed: version_scheme.Scheme | None,
                 claim: Callable[[version_scheme.Scheme], None]) -> None:
        self.claimed, self._claim = claimed, claim

    def admit(self, event: ChangeEvent) -> Change:
        """The validated change, or BadEvent: the scheme is checked first, then the row."""
        reason = version_scheme.refusal(TABLE, self.claimed, event.scheme)
        if reason:
            raise BadEvent(reason)
        try:
            change = to_change(event)
        except BadRow:  # its version is written (a retraction): the scheme is decided
            self._claim_for(event)
            raise
        self._claim_for(event)
        return change

    def _claim_for(self, event: ChangeEvent) -> None:
        if self.claimed is None and event.scheme is not None:
            self._claim(event.scheme)
            self.claimed = event.scheme


def apply_items(wh: Warehouse, items: Iterable[Item], report: CdcReport, batch_size: int,
                max_retries: int, gate: SchemeGate | None = None) -> None:
    """Validate (through `gate` when given), cut into batches of `batch_size` records, reduce
    and apply each batch. Skipped items are only counted."""
    admit = gate.admit if gate is not None else to_change
    changes: list[Change] = []
    rejects: list[Reject] = []
    for item in items:
        if type(item) is ChangeEvent:
            try:
                changes.append(admit(item))
            except BadRow as exc:
                rejects.append(event_reject(item, str(exc)))
                changes.append(retraction(item))
            except BadEvent as exc:
                rejects.append(event_reject(item, str(exc)))
        elif type(item) is Skipped:
            report.skip(item)
            continue
        else:
            rejects.append(item)
        if len(changes) + len(rejects) >= batch_size:
            apply_batch(wh, changes, rejects, report, max_retries)
            changes, rejects = [], []
            if report.batches == 1:
                fault_point("cdc_after_first_batch")
    if changes or rejects:
        apply_batch(wh, changes, rejects, report, max_retries)


def apply_batch(wh: Warehouse, changes: Sequence[Change], rejects: Sequence[Reject],
                report: CdcReport, max_retries: int) -> None:
    """One bulk insert of the reduced batch, then its rejects; both safe to repeat."""
    reduced = reduce_changes(changes)
    refused = list(rejects) + [
        event_reject(c.event, "conflict: same _version, different content")
        for c in reduced.conflicts
    ]
    if reduced.rows:
        rows = to_arrow(reduced.rows)
        with_retries(lambda: wh.insert(TABLE, rows), f"insert into {TABLE}", max_retries)
    if refused:
        quarantined = quarantine_rows(rejects_table(refused), SOURCE, report.run_id,
                                      report.started_at)
        with_retries(lambda: wh.insert("etl_quarantine", quarantined),
                     "insert into etl_quarantine", max_retries)
        for reject in refused:
            report.reject_reasons[reject.reason] = report.reject_reasons.get(reject.reason, 0) + 1
    retracting = sum(1 for c in changes if c.deleted and c.event.op is not Op.DELETE)
    report.batches += 1
    report.events_read += len(changes) + len(rejects) - retracting  # a refused row is both
    report.rows_applied += len(reduced.rows)
    report.collapsed += reduced.collapsed
    report.conflicts += len(reduced.conflicts)
    report.rejected += len(refused)
    log.debug("batch %d: %d events, %d rows, %d rejected", report.batches,
              len(changes) + len(rejects) - retracting, len(reduced.rows), len(refused))


def scheme_gate(wh: Warehouse, claimed_by: str, max_retries: int) -> SchemeGate:
    """The gate of one replay run, from the table's claim (LineageError: none can be made)."""
    claim = with_retries(lambda: cdc_lineage.read_claim(wh, TABLE), "read the cdc_lineage claim",
                         max_retries)

    def write(scheme: version_scheme.Scheme) -> None:
        with_retries(lambda: cdc_lineage.write_claim(wh, TABLE, scheme, claimed_by),
                     "claim cdc_transactions", max_retries)

    return SchemeGate(claim.scheme if claim else None, write)


def claim_for_binlog(wh: Warehouse, stream: str) -> str | None:
    """For the binlog run, before its snapshot or stream: claim cdc_transactions for binlog
    positions, or say why the run must not start (README: CDC replay, reset)."""
    return cdc_lineage.claim_replica(wh, TABLE, version_scheme.Scheme.BINLOG, f"binlog {stream}")


def run_replay(settings: Settings, stream: TextIO, input_name: str,
               batch_size: int = DEFAULT_BATCH_SIZE, optimize: bool = False,
               source_db: str | None = None) -> CdcReport:
    """Replay one event stream into the warehouse; raises on failure (after the audit row),
    `cdc_lineage.LineageError` when cdc_transactions cannot take any event until a reset.
    Debezium events naming another database than `source_db` (default: the configured
    MYSQL_DATABASE) or another table are skipped."""
    report = CdcReport(run_id=uuid.uuid4().hex[:12], started_at=datetime.now(timezone.utc),
                       input_name=input_name)
    clock = time.monotonic()
    database = source_db or settings.mysql_database
    wh = open_warehouse(settings)
    try:
        gate = scheme_gate(wh, f"replay {_printable(input_name)[:200]}", settings.max_retries)
        apply_items(wh, events.read_events(stream, database=database), report, batch_size,
                    settings.max_retries, gate)
        if optimize:  # housekeeping only: reads are right without it (FINAL in the view)
            with_retries(lambda: wh.execute(f"OPTIMIZE TABLE analytics_dw.{TABLE} FINAL"),
                         f"optimize {TABLE}", settings.max_retries)
        report.status = "completed_with_rejects" if report.rejected else "success"
    except Exception as exc:
        report.status = "failed"
        report.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
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
        window_from=_printable(report.input_name), window_to=f"skipped={report.skipped}",
        rows_read=report.events_read, rows_loaded=report.rows_applied,
        rows_rejected=report.rejected, status=report.status, error=report.error,
        seconds=report.seconds,
    ))
