"""Change events -> replica rows, pure: validate, retract, reduce, and admit by version scheme.

* validate (`to_change`): a ChangeEvent's row -> the `cdc_transactions` row it becomes, or
  `BadEvent`; nothing is rounded, clipped or defaulted. A delete becomes a tombstone: its key
  and version, `_deleted = 1`, the other columns zero or empty. A well-formed event whose row is
  refused (`BadRow`) becomes a tombstone too (`retraction`): its version retracts the older ones.
* reduce (`reduce_changes`): the highest version of each key in a batch, so one insert never
  carries two versions of a key; exact copies are dropped. Two events of one key with the same
  version and different content are a conflict: both are refused and the key falls back to
  its best lower version.
* one scheme per table (`SchemeGate`, rules in `version_scheme.py`): only events whose versions
  are of the scheme the table is claimed for are admitted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from hashlib import blake2b
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ewallet_etl.core import events, transform, value_rules, version_scheme
from ewallet_etl.core.dimension_changes import DimChange, to_dim_change
from ewallet_etl.core.events import BadEvent, BadRow, ChangeEvent, Op, Reject
from ewallet_etl.core.instants import EPOCH, NAIVE_EPOCH

TABLE = "cdc_transactions"
MAX_DATETIME = (1 << 32) - 1  # ClickHouse DateTime: 1970-01-01 .. 2106-02-07 06:28:15 UTC
MAX_RAW_CHARS = 65_536  # quarantined text is cut here (a broken array can swallow the rest)
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
    if not 0 <= value <= value_rules.MAX_ID:
        raise BadEvent(f"{name} out of range (0..4294967295)")
    return value


def _amount(value: Any) -> Decimal:
    if value is None:
        raise BadEvent("missing amount")
    if isinstance(value, str) and value_rules.is_decimal_text(value):
        value = Decimal(value)
    elif type(value) is int:
        value = Decimal(value)
    if not isinstance(value, Decimal) or not value.is_finite():
        raise BadEvent("amount is not a decimal number")
    problem = value_rules.amount_problem(value)
    if problem:
        raise BadEvent(problem)
    return value


def _status(value: Any) -> str:
    if value is None:
        raise BadEvent("missing status")
    problem = value_rules.status_problem(value)
    if problem:
        raise BadEvent(problem)
    return value


def _seconds(value: Any) -> int:
    """transaction_time -> whole seconds (floored, as the batch does: the warehouse keeps
    DateTime seconds, so a column widened to DATETIME(6) loads the same from both); a naive
    datetime (binlog) is UTC, a text needs an offset."""
    if value is None:
        raise BadEvent("missing transaction_time")
    if isinstance(value, datetime):
        moment = value
    else:
        moment = events.iso_time(value, "transaction_time")
    # naive: UTC wall-clock time, no conversion per row; aware: the difference takes the offset
    seconds = (moment - (EPOCH if moment.tzinfo else NAIVE_EPOCH)) // SECOND
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
    keys, versions, deleted, users, merchants, amounts, statuses, times, _ = zip(*rows, strict=True)
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
    raws = [printable(r.raw) for r in rejects]
    keys = [f"{r.key}#{blake2b(raw.encode(), digest_size=6).hexdigest()}"
            for r, raw in zip(rejects, raws, strict=True)]
    return pa.table({
        "record_key": pa.array(keys, pa.string()),
        "_version": pa.array([r.version for r in rejects], pa.uint64()),
        "reason": pa.array([r.reason for r in rejects], pa.string()),
        "raw": pa.array(raws, pa.string()),
    })


def printable(raw: str) -> str:
    """Valid UTF-8 for a String column: bytes that were not UTF-8 show as \\udcXX escapes."""
    text = raw if len(raw) <= MAX_RAW_CHARS else raw[:MAX_RAW_CHARS] + "...[cut]"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class SchemeRefused(BadEvent):
    """An event whose version scheme is not the one the replicas are claimed for."""


class SchemeGate:
    """Admits into cdc_transactions only events of the scheme that feeds it. An unclaimed
    table is claimed (through `claim`, before the batch is inserted) by the first event that
    passes validation, so an invalid event never decides the scheme."""

    def __init__(self, claimed: version_scheme.Scheme | None,
                 claim: Callable[[version_scheme.Scheme], None]) -> None:
        self.claimed, self._claim = claimed, claim

    def admit(self, event: ChangeEvent) -> Change:
        """The validated change, or BadEvent: the scheme is checked first (SchemeRefused),
        then the row."""
        self._check_scheme(event)
        try:
            change = to_change(event)
        except BadRow:  # its version is written (a retraction): the scheme is decided
            self._claim_for(event)
            raise
        self._claim_for(event)
        return change

    def admit_dimension(self, event: ChangeEvent) -> DimChange:
        """A users/merchants event, for the replicas the same claim covers."""
        self._check_scheme(event)
        change = to_dim_change(event)
        self._claim_for(event)
        return change

    def _check_scheme(self, event: ChangeEvent) -> None:
        reason = version_scheme.refusal(TABLE, self.claimed, event.scheme)
        if reason:
            raise SchemeRefused(reason)

    def _claim_for(self, event: ChangeEvent) -> None:
        if self.claimed is None and event.scheme is not None:
            self._claim(event.scheme)
            self.claimed = event.scheme
