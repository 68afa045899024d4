"""Binlog CDC: the pure rules (positions, versions, transaction boundaries, preflight). The
durable position in ClickHouse (`cdc_state`) is kept by `state/positions.py`.

Versions. A binlog position is monotonic over the whole log: file `binlog.000042` offset `p`
comes after every offset of `binlog.000041`. A row change is versioned by the position *after*
its rows event (`end_log_pos`, the event header's `log_pos`) and its index inside the event,
packed by `events.binlog_version` (the one definition, shared with Debezium's coordinates):

    version = ((file_sequence << 32) | end_log_pos) << 16 | row_index     (a UInt64)

16 bits of file sequence (files up to .065535), 32 bits of offset (the header field is 32
bits), 16 bits of row index (an event is at most `binlog_row_event_max_size`, 8 KiB by
default: a few hundred of our rows). Values out of range raise `VersionOverflow`, never wrap.
Snapshot rows get `version(snapshot position, 0)`: every change after the snapshot ends after
that position, so it wins. The JSON-file replay (`--source file`) versions flat events by
microsecond timestamps instead: the scales are not comparable, so one replica table must be
fed by one kind of source only (start it afresh to switch).

Position store. The position is saved in the warehouse (`cdc_state`, ReplacingMergeTree keyed
by the stream name), right after the micro-batch it covers has been inserted: position and data
live (and get dropped) together, so a fresh or rebuilt warehouse re-snapshots by itself instead
of trusting a local file that describes another warehouse. Data first, position second: a crash
in between replays the batch, which the versions make idempotent. Only positions at transaction
boundaries are saved (`BoundaryTracker`), never one in the middle of a transaction, and never
one past the start of a prepared XA transaction that is not resolved yet (`XaHold`).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Iterable, Mapping, NamedTuple, Sequence

from ewallet_etl.core.events import BadEvent, ChangeEvent, binlog_version

_SEQUENCE = re.compile(r"\.(\d+)$")


class VersionOverflow(ValueError):
    """A position or row index does not fit the version layout."""


@dataclass(frozen=True, order=True)
class Position:
    """A binlog coordinate; ordered by (file sequence, offset), like the binlog itself."""

    sequence: int
    pos: int
    file: str

    @classmethod
    def of(cls, file: str, pos: int) -> "Position":
        return cls(file_sequence(file), int(pos), file)

    def __str__(self) -> str:
        return f"{self.file}:{self.pos}"


def file_sequence(name: str) -> int:
    """`binlog.000042` -> 42 (the server numbers its binlog files in order)."""
    match = _SEQUENCE.search(name)
    if not match:
        raise ValueError(f"not a binlog file name: {name!r}")
    return int(match.group(1))


def version(position: Position, row_index: int = 0) -> int:
    """The UInt64 version of row `row_index` of the event that ends at `position`."""
    try:
        return binlog_version(position.file, position.pos, row_index)
    except BadEvent as exc:
        raise VersionOverflow(f"{exc} at {position} row {row_index} (files up to .065535, "
                              f"at most 65536 rows per event)") from None


def derive_server_id(stream: str, database: str) -> int:
    """A stable replica id for a stream: restarts reuse it (the server then ends a zombie dump
    of the same stream), two streams differ. In [100000, 2**31) so it stays clear of the small
    ids people give real servers."""
    return 100_000 + zlib.crc32(f"{stream}/{database}".encode()) % (2**31 - 100_000)


class BoundaryTracker:
    """Feeds on event kinds and says when the stream stands between two transactions.

    A row-based transaction is `GTID [BEGIN] TABLE_MAP ROWS... XID` (or `COMMIT` for
    non-transactional tables); DDL is `GTID QUERY` with no BEGIN. MariaDB marks DDL in its GTID
    event (flag FL_STANDALONE = 1) and writes no BEGIN; MySQL writes BEGIN.
    """

    def __init__(self) -> None:
        self.in_transaction = False

    def gtid(self, mariadb_flags: int | None) -> None:
        """A GTID event: MariaDB's says whether a transaction follows; MySQL's does not."""
        self.in_transaction = mariadb_flags is not None and not mariadb_flags & 1

    def query(self, sql: str) -> bool:
        """A query event; True if it ends a transaction or is a statement on its own (DDL)."""
        word = sql.strip().upper()
        if word == "BEGIN" or word.startswith("XA START"):
            self.in_transaction = True
            return False
        if word in ("COMMIT", "ROLLBACK") or not self.in_transaction:
            self.in_transaction = False
            return True
        return False

    def xid(self) -> bool:
        """An XID event (or XA_PREPARE, which ends its event group the same way)."""
        self.in_transaction = False
        return True


class Boundary(NamedTuple):
    """The end of an event group: where the reader is (`at`, for the end-of-run check) and
    the position a restart must read from (`resume`, the one to save: never past the start of
    a prepared, unresolved XA transaction)."""

    at: Position
    resume: Position


class XaHold:
    """Rows of XA transactions, held from XA PREPARE until XA COMMIT (released with their own
    row-event versions) or XA ROLLBACK (dropped).

    MariaDB writes an XA transaction's rows at XA PREPARE - a group `GTID (FL_PREPARED_XA) rows
    XA END XA_PREPARE` - and XA COMMIT / XA ROLLBACK later as a group of its own; MySQL opens
    the group with an `XA START` query instead. A held transaction pins the resume position
    at its group's start, so a restart reads its rows again (memory: a prepared transaction's
    rows stay in memory until it is resolved). A COMMIT of an xid never seen prepared (it was
    prepared before the stream's start and already applied, or before a snapshot) has nothing
    to release.
    """

    def __init__(self) -> None:
        self.collecting: list[ChangeEvent] | None = None
        self.start: Position | None = None
        self.prepared: dict[tuple[int, bytes, bytes], tuple[Position, list[ChangeEvent]]] = {}

    def begin(self, start: Position) -> None:
        """An XA transaction's group starts at `start`: hold its rows from now on."""
        self.collecting, self.start = [], start

    def rows(self, changes: list[ChangeEvent]) -> list[ChangeEvent]:
        """The changes to pass on now: none while an XA group is being read."""
        if self.collecting is None:
            return changes
        self.collecting.extend(changes)
        return []

    def prepare(self, xid: tuple[int, bytes, bytes], one_phase: bool,
                start: Position) -> list[ChangeEvent]:
        """XA_PREPARE ends the group; ONE PHASE (MySQL) commits it at once."""
        held, group_start = self.collecting or [], self.start or start
        self.collecting = self.start = None
        if one_phase:
            return held
        self.prepared[xid] = (group_start, held)
        return []

    def resolve(self, xid: tuple[int, bytes, bytes], commit: bool) -> list[ChangeEvent]:
        _, held = self.prepared.pop(xid, (None, []))
        return held if commit else []

    def resume(self, boundary: Position) -> Position:
        return min([boundary, *(start for start, _ in self.prepared.values())])


# --- preflight (pure: variables, grants and replica hosts in, problems out) ---------------

REQUIRED_VARIABLES = (
    ("log_bin", "ON", "enable the binary log: log_bin=binlog in my.cnf [mysqld] (restart)"),
    ("binlog_format", "ROW", "set binlog_format=ROW in my.cnf [mysqld] or "
                             "SET GLOBAL binlog_format='ROW'"),
    ("binlog_row_image", "FULL", "set binlog_row_image=FULL in my.cnf [mysqld] or "
                                 "SET GLOBAL binlog_row_image='FULL'"),
    ("binlog_row_metadata", "FULL", "set binlog_row_metadata=FULL in my.cnf [mysqld] or "
                                    "SET GLOBAL binlog_row_metadata='FULL'"),
)


def variable_problems(variables: Mapping[str, str]) -> list[str]:
    """One message per binlog setting that is wrong; each says how to fix it."""
    found = {k.lower(): str(v).upper() for k, v in variables.items()}
    problems = []
    for name, wanted, fix in REQUIRED_VARIABLES:
        value = found.get(name)
        if value is None and name == "binlog_row_metadata":
            problems.append("the server has no binlog_row_metadata (column names are not in the "
                            "binlog): use MariaDB >= 10.5 or MySQL >= 8.0.14")
        elif value is None or {"1": "ON", "0": "OFF"}.get(value, value) != wanted:
            problems.append(f"{name} is {value or 'unset'}, needs {wanted}: {fix}")
    return problems


def _granted(grants: Iterable[str]) -> set[str]:
    """Privileges granted ON *.* (the binlog ones are global), upper-cased."""
    privileges: set[str] = set()
    for line in grants:
        match = re.match(r"GRANT (.+?) ON \*\.\* TO ", line.strip(), re.IGNORECASE)
        if match:
            privileges |= {p.strip().upper() for p in match.group(1).split(",")}
    return privileges


def privilege_problems(grants: Sequence[str], user: str) -> list[str]:
    """REPLICATION SLAVE to read the binlog; REPLICATION CLIENT (MariaDB >= 10.5: BINLOG
    MONITOR) for SHOW MASTER STATUS / SHOW BINARY LOGS. Roles are not expanded."""
    have = _granted(grants)
    if "ALL PRIVILEGES" in have:
        return []
    problems = []
    if not have & {"REPLICATION SLAVE", "REPLICATION REPLICA"}:
        problems.append(f"missing privilege REPLICATION SLAVE: GRANT REPLICATION SLAVE ON *.* "
                        f"TO {user}")
    if not have & {"REPLICATION CLIENT", "BINLOG MONITOR", "SUPER"}:
        problems.append(f"missing privilege REPLICATION CLIENT (MariaDB >= 10.5: BINLOG MONITOR): "
                        f"GRANT REPLICATION CLIENT ON *.* TO {user}")
    return problems


def server_id_problems(server_id: int, source_server_id: int, replicas: Sequence[tuple[int, str]],
                       report_host: str) -> list[str]:
    """Our server id must differ from the source's and from every other registered replica's
    (a replica with our id and our report name is this stream's previous, dead connection)."""
    fix = "set CDC_SERVER_ID to an unused id (1..4294967295)"
    if not 0 < server_id < 2**32:
        return [f"server id {server_id} is out of range: {fix}"]
    if server_id == source_server_id:
        return [f"server id {server_id} is the source server's own id: {fix}"]
    taken = [host for sid, host in replicas if sid == server_id and host != report_host]
    if taken:
        return [f"server id {server_id} is in use by replica {taken[0]!r} (SHOW SLAVE HOSTS): "
                f"{fix}"]
    return []
