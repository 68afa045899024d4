"""What may feed a CDC replica table: versions of one scheme, events of its own source (pure).

A replica is a ReplacingMergeTree(_version): the highest version of a key wins. That is only
right when every version in the table was made the same way. There are two ways:

* `Scheme.MICROS`: microseconds since the epoch (flat events' `_version`; Debezium's
  `source.ts_us` / `ts_ns` / `ts_ms` when the event has no binlog position);
* `Scheme.BINLOG`: the binlog position, `((file sequence << 32) | pos) << 16 | row` (Debezium
  with `source.file`/`source.pos`; the live binlog reader, `binlog_state.version`).

They do not order against each other, and their sizes overlap: file `.000001` starts at
2**48, which read as microseconds is 1978-12; file `.000006` is 2023; files up to `.000016`
cover the microseconds of 1978-2112. So a table's scheme cannot be read off its versions. It
is recorded instead: the first run that writes a table claims it for its scheme
(`analytics_dw.cdc_lineage`, see `cdc_lineage.py`), and a later run of the other scheme is
refused (a replay: event by event; the binlog: the whole run) until the replicas are reset
(`cdc-stream.py --reset-replica`). A table that holds rows but no claim (written before claims
existed) is refused the same way, rather than guessed.

Origin: a Debezium event names where it comes from (`source.db`, `source.table`). Only the
source database's `transactions` feed `cdc_transactions`; events of any other database or
table are not ours and are skipped (counted, never applied, never quarantined). Flat events
and the binlog reader's do not say, and are taken as ours.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Mapping

REPLICATED_TABLE = "transactions"  # the source table behind cdc_transactions
# Whose change events feed the replicas and the star schema; a claim on cdc_transactions
# covers the users and merchants replicas the same stream feeds.
SOURCE_TABLES = ("transactions", "users", "merchants")
RESET_HINT = "cdc-stream.py --reset-replica"


class Scheme(Enum):
    """How a `_version` was made; the value is what `cdc_lineage.scheme` stores."""

    MICROS = "micros"
    BINLOG = "binlog"

    @property
    def label(self) -> str:
        return "microsecond" if self is Scheme.MICROS else "binlog-position"


def parse_scheme(text: str) -> Scheme:
    """A stored claim -> Scheme; ValueError for anything else (a newer or foreign writer)."""
    return Scheme(text)


def has_binlog_position(source: Mapping[str, Any]) -> bool:
    """A Debezium `source` with a usable position: a non-empty file name and an integer pos."""
    file, pos = source.get("file"), source.get("pos")
    return isinstance(file, str) and bool(file) and type(pos) is int


def debezium_scheme(source: Mapping[str, Any]) -> Scheme:
    """The scheme of a Debezium event's version (`events.debezium_version` makes it)."""
    return Scheme.BINLOG if has_binlog_position(source) else Scheme.MICROS


def refusal(table: str, claimed: Scheme | None, scheme: Scheme | None) -> str | None:
    """Why an event of `scheme` may not be applied to `table` claimed by `claimed` (None: it
    may). An unclaimed table takes any scheme: the first event applied claims it. The texts
    are fixed, so quarantine reasons can be counted."""
    if scheme is None:
        return f"event does not state its version scheme; {table} takes one scheme only"
    if claimed is None or claimed is scheme:
        return None
    return (f"version scheme {scheme.label} does not match {table} (fed by {claimed.label} "
            f"versions); see README: reset")


def start_refusal(table: str, claimed: Scheme | None, scheme: Scheme) -> str | None:
    """Why a whole run of `scheme` may not start on `table` (None: it may); says the fix."""
    if claimed is None or claimed is scheme:
        return None
    return (f"{table} is fed by {claimed.label} versions; {scheme.label} versions do not "
            f"order against them, so the newest change could lose: run `{RESET_HINT}` to "
            f"empty the CDC replicas, then this command again (docs/change-events.md, 'Reset')")


def unclaimed_rows_problem(table: str) -> str:
    """A table with rows but no claim: written before claims existed; its scheme is unknown."""
    return (f"{table} holds rows but no record of which version scheme wrote them (written "
            f"before cdc_lineage existed; microsecond and binlog-position versions cannot be "
            f"told apart by size): run `{RESET_HINT}`, then replay or stream again")


def unknown_claim_problem(table: str, text: str) -> str:
    return (f"{table} is claimed by an unknown version scheme {text!r} (a newer version of "
            f"this program?): run `{RESET_HINT}` to start it afresh")


def is_foreign(db: str | None, table: str, database: str | None) -> bool:
    """True for an event of a table that is not one of the three source tables, or of another
    database than `database` when the event names one (names compare exactly, as MySQL does on
    Linux). `database` None: only the table counts."""
    if table not in SOURCE_TABLES:
        return True
    return db is not None and database is not None and db != database


def origin_label(db: str | None, table: str) -> str:
    """`db.table` for the skip counts; `?` when the event names no database."""
    return f"{db if db is not None else '?'}.{table}"
