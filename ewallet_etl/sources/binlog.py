"""Binlog CDC, source side: preflight, the consistent snapshot, and the change reader.

The reader uses python-mysql-replication 1.0.17 with `is_mariadb=False`, `log_file`/`log_pos`
and `resume_stream=True` on MariaDB too: the library's MariaDB branch ignores the position
(it always dumps from the first binlog) and sends a request one byte short, which ends in
'Lost connection' loops on big backlogs. The MySQL-style COM_BINLOG_DUMP is well formed on
MariaDB, honours the position, and MariaDB's GTID events still decode.

The library reconnects silently on errors 2006/2013 from where it stopped, possibly inside a
transaction. We refuse that (`StreamInterrupted` on a second dump connection): the run restarts
from its own saved position instead, which is always a transaction boundary.

Decoding speed: see binlog_decode.py (a TableMap cache and compiled row readers).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any, Iterator

import pymysql
import pymysql.cursors
from pymysql.connections import Connection
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.constants import FIELD_TYPE, NONE_SOURCE
from pymysqlreplication.event import (
    ExecuteLoadQueryEvent,
    FormatDescriptionEvent,
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XAPrepareEvent,
    XidEvent,
)
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from ewallet_etl.config import Settings
from ewallet_etl.core.binlog_position import Boundary, BoundaryTracker, Position, XaHold, version
from ewallet_etl.core.binlog_statements import Action, classify, xa_resolution, xa_start
from ewallet_etl.core.events import ChangeEvent, Op
from ewallet_etl.retry import TransientError
from ewallet_etl.sources.mysql import (
    SourceError,
    connect,
    connection_args,
    source_error,
)

log = logging.getLogger(__name__)

# The replicated tables and their primary keys (the allow-list for identifiers, too).
TABLE_KEYS = {"transactions": "transaction_id", "users": "user_id", "merchants": "merchant_id"}
WANTED_EVENTS = [
    RotateEvent, FormatDescriptionEvent, GtidEvent, MariadbGtidEvent, QueryEvent, XidEvent,
    XAPrepareEvent, ExecuteLoadQueryEvent, WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent,
    HeartbeatLogEvent,
]
FL_PREPARED_XA = 64  # MariaDB GTID flag: the group is an XA transaction ending in XA PREPARE
TIMESTAMP_TYPES = (FIELD_TYPE.TIMESTAMP, FIELD_TYPE.TIMESTAMP2)
ZERO_TIMESTAMP = datetime(1970, 1, 1)  # how both decoders give TIMESTAMP 0 (0000-00-00)
ZERO_TIMESTAMP_END = ZERO_TIMESTAMP + timedelta(seconds=1)
# The dump session may wait on a slow apply; the server's 60 s default would cut it off.
DUMP_SESSION = "SET SESSION net_write_timeout = 600, net_read_timeout = 600"


class StreamInterrupted(TransientError):
    """The dump connection dropped; restart from the saved position."""


class StreamError(SourceError):
    """The binlog holds something we must not apply (an incomplete or nameless row image)."""


class UnreplicableStatement(StreamError):
    """A statement changes a replicated table without row events (binlog_statements.py): the
    stream stops before it; `saved` is filled in by the streamer once the batch before it
    landed."""

    def __init__(self, kind: str, table: str, position: Position) -> None:
        super().__init__(kind, table, str(position))
        self.kind, self.table, self.position = kind, table, position
        self.saved: Position | None = None

    def __str__(self) -> str:
        return (f"{self.kind} on {self.table} at {self.position} cannot be replicated (it "
                f"changes rows without row events); position saved at {self.saved} (before "
                f"it): to go on, run cdc-stream.py --source binlog --resnapshot")


# The columns the replicas and the star schema read from each table; a rows event without one
# of them follows a DDL that dropped or renamed it (ColumnsMissing).
NEEDED_COLUMNS = {
    "transactions": ("transaction_id", "user_id", "merchant_id", "amount", "status",
                     "transaction_time", "updated_at"),
    "users": ("user_id", "name", "email", "city", "created_at", "updated_at"),
    "merchants": ("merchant_id", "name", "category", "city", "created_at", "updated_at"),
}


class ColumnsMissing(UnreplicableStatement):
    """Rows of a replicated table arrive without a column the warehouse needs (dropped or
    renamed by DDL): the stream stops before them, as before a statement it cannot follow."""

    def __init__(self, table: str, missing: list[str], position: Position) -> None:
        super().__init__("a rows event", table, position)
        self.missing = missing

    def __str__(self) -> str:
        return (f"rows of {self.table} at {self.position} have no column "
                f"{', '.join(self.missing)} (dropped or renamed in the source?): the CDC "
                f"replica and the star schema need it, so the stream stopped before these rows; "
                f"position saved at {self.saved}. Restore the column in the source, then run "
                f"cdc-stream.py --source binlog --resnapshot")


def control_connection(settings: Settings, **extra: Any) -> pymysql.connections.Connection:
    """A connection for the binlog run's control statements (the batch's own kind)."""
    return connect(settings, **extra)


def master_position(conn: pymysql.connections.Connection) -> Position:
    """The server's current end of binlog (SHOW BINARY LOG STATUS on MySQL >= 8.2)."""
    with conn.cursor() as cur:
        try:
            cur.execute("SHOW MASTER STATUS")
        except pymysql.err.ProgrammingError:
            cur.execute("SHOW BINARY LOG STATUS")
        row = cur.fetchone()
    if not row:
        raise SourceError("the source has no binary log (SHOW MASTER STATUS is empty): "
                          "enable log_bin in my.cnf [mysqld]")
    return Position.of(row[0], row[1])


def binary_logs(conn: pymysql.connections.Connection) -> dict[str, int]:
    """File name -> size, for every binlog file still on the server."""
    with conn.cursor() as cur:
        cur.execute("SHOW BINARY LOGS")
        return {row[0]: int(row[1]) for row in cur.fetchall()}


def quote(identifier: str) -> str:
    if identifier not in TABLE_KEYS:
        raise ValueError(f"not a replicated table: {identifier!r}")
    return f"`{identifier}`"


@contextlib.contextmanager
def consistent_snapshot(settings: Settings) -> Iterator[tuple[Position, Connection]]:
    """A REPEATABLE READ snapshot and the binlog position it corresponds to.

    MariaDB reports that position for the snapshot itself (Binlog_snapshot_file/_position in
    the session status after START TRANSACTION WITH CONSISTENT SNAPSHOT): no lock at all.
    MySQL has no such status: there a brief FLUSH TABLES WITH READ LOCK (needs RELOAD) holds
    commits while the snapshot starts and SHOW MASTER STATUS is read, as mysqldump
    --single-transaction --source-data does.
    """
    conn = control_connection(settings, autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            cur.execute("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
            status = {name.lower(): value for name, value in cur.fetchall()}
        if "binlog_snapshot_file" in status:
            position = Position.of(status["binlog_snapshot_file"],
                                   int(status["binlog_snapshot_position"]))
        else:
            conn.rollback()
            with conn.cursor() as cur:
                cur.execute("FLUSH TABLES WITH READ LOCK")
                try:
                    cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                    position = master_position(conn)
                finally:
                    cur.execute("UNLOCK TABLES")
        yield position, conn
        conn.rollback()
    except pymysql.MySQLError as exc:
        raise source_error(settings, exc) from exc
    finally:
        conn.close()


def snapshot_rows(conn: pymysql.connections.Connection, table: str,
                  chunk_rows: int) -> Iterator[list[dict[str, Any]]]:
    """The table's rows as dicts, `chunk_rows` at a time, streamed (unbuffered cursor) inside
    the snapshot's transaction."""
    with conn.cursor(pymysql.cursors.SSDictCursor) as cur:
        cur.execute(f"SELECT * FROM {quote(table)}")
        while chunk := cur.fetchmany(chunk_rows):
            yield chunk


def snapshot_events(table: str, rows: list[dict[str, Any]],
                    snapshot_version: int) -> list[ChangeEvent]:
    key = TABLE_KEYS[table]
    return [ChangeEvent(Op.INSERT, table, str(r[key]), r, snapshot_version) for r in rows]


# --- the change reader ---------------------------------------------------------------------

class _Connector:
    """pymysql.connect for the library, refusing its silent re-connect of the dump."""

    def __init__(self) -> None:
        self.dump_connections = 0

    def __call__(self, **kwargs: Any) -> pymysql.connections.Connection:
        if "db" in kwargs:  # the library's control connection; PyMySQL deprecates `db`
            kwargs["database"] = kwargs.pop("db")
        if kwargs.get("database") != "information_schema":
            self.dump_connections += 1
            if self.dump_connections > 1:
                raise StreamInterrupted("the binlog connection dropped")
            kwargs["init_command"] = DUMP_SESSION
        return pymysql.connect(**kwargs)


def open_reader(settings: Settings, server_id: int, start: Position, report_host: str,
                follow: bool, heartbeat: float) -> BinLogStreamReader:
    return BinLogStreamReader(
        connection_settings={**connection_args(settings),
                             "read_timeout": max(30, 4 * heartbeat)},
        server_id=server_id,
        is_mariadb=False,  # see the module docstring: MySQL-style dump on MariaDB too
        log_file=start.file, log_pos=start.pos, resume_stream=True,
        blocking=follow, slave_heartbeat=heartbeat if follow else None,
        only_schemas=[settings.mysql_database], only_tables=list(TABLE_KEYS),
        only_events=WANTED_EVENTS, report_slave=report_host,
        pymysql_wrapper=_Connector(), enable_logging=False,
    )


def row_changes(event: Any, end: Position) -> list[ChangeEvent]:
    """One rows event -> change events, versioned by the event's end position and row index."""
    table, key = event.table, TABLE_KEYS[event.table]
    if any(c.name is None or c.name.startswith("UNKNOWN_COL") for c in event.columns):
        raise StreamError("a rows event has no column names: set binlog_row_metadata=FULL "
                          "(the events written before that cannot be replicated: --resnapshot)")
    present = {c.name for c in event.columns}
    missing = [name for name in NEEDED_COLUMNS[table] if name not in present]
    if missing:
        raise ColumnsMissing(table, missing, end)
    stamps = [c.name for c in event.columns if getattr(c, "type", None) in TIMESTAMP_TYPES]
    changes: list[ChangeEvent] = []
    rows = event.rows
    first = version(end, 0)
    if len(rows) > 1:
        version(end, len(rows) - 1)  # refuses an index the version has no room for
    for index, row in enumerate(rows):
        v = first + index  # the row index is the version's lowest bits
        if isinstance(event, UpdateRowsEvent):
            before = _checked(row, "before_", stamps)
            after = _checked(row, "after_", stamps)
            if before[key] != after[key]:  # a key change: the old key leaves
                changes.append(ChangeEvent(Op.DELETE, table, str(before[key]), before, v))
            changes.append(ChangeEvent(Op.UPDATE, table, str(after[key]), after, v))
        else:
            values = _checked(row, "", stamps)
            op = Op.DELETE if isinstance(event, DeleteRowsEvent) else Op.INSERT
            changes.append(ChangeEvent(op, table, str(values[key]), values, v))
    return changes


def _checked(row: dict[str, Any], prefix: str, stamps: list[str]) -> dict[str, Any]:
    none_sources = row.get(prefix + "none_sources")
    if none_sources and NONE_SOURCE.COLS_BITMAP in none_sources.values():
        raise StreamError("a rows event has an incomplete row image: set binlog_row_image=FULL "
                          "(and check no session sets it to MINIMAL)")
    values = row[prefix + "values"]
    zero = [name for name in stamps if _is_zero_timestamp(values.get(name))]
    return {**values, **dict.fromkeys(zero)} if zero else values


def _is_zero_timestamp(value: Any) -> bool:
    """TIMESTAMP 0 is the zero date (or a value out of range the server stored as zero; the
    range starts at 1970-01-01 00:00:01 UTC): None, so the apply rejects it, never 1970."""
    return (isinstance(value, datetime) and value.tzinfo is None
            and ZERO_TIMESTAMP <= value < ZERO_TIMESTAMP_END)


def read_changes(reader: BinLogStreamReader, start: Position,
                 database: str | None = None) -> Iterator[tuple[str, Any, int]]:
    """Yield ("rows", [ChangeEvent], ts) of committed changes, ("truncate", (table, Position),
    ts) for a TRUNCATE of a replicated table, ("boundary", Boundary, ts) after every event
    group, and ("tick", None, ts) on heartbeats; ts is the event's source timestamp (0 if
    none). Raises UnreplicableStatement at a statement the replica cannot follow. `database`:
    the replicated tables' database (None: a table name in any database counts).
    Rows of an XA transaction are held from its PREPARE to its COMMIT (XaHold)."""
    file, tracker, held, last = start.file, BoundaryTracker(), XaHold(), start
    for event in reader:
        end = Position.of(file, event.packet.log_pos) if event.packet.log_pos else None
        ts, ended = event.timestamp, False
        if isinstance(event, RotateEvent):
            file = event.next_binlog
            if event.timestamp:  # a real rotation (the dump's opening one has no timestamp)
                end, ended = Position.of(file, event.position), True
        elif isinstance(event, (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)):
            if changes := held.rows(row_changes(event, end)):
                yield "rows", changes, ts
        elif isinstance(event, (XidEvent, XAPrepareEvent)):
            if isinstance(event, XAPrepareEvent):
                xid = (event.xid_format_id, event.xid_gtrid, event.xid_bqual)
                if changes := held.prepare(xid, event.one_phase, last):
                    yield "rows", changes, ts
            ended = tracker.xid()
        elif isinstance(event, (QueryEvent, ExecuteLoadQueryEvent)):
            schema, sql = _statement(event)
            at = Position.of(file, event.packet.log_pos - event.packet.event_size)
            yield from _query(sql, schema, database, held, last, at, end, ts)
            ended = tracker.query(sql)
        elif isinstance(event, MariadbGtidEvent):
            tracker.gtid(event.flags)
            if event.flags & FL_PREPARED_XA:
                held.begin(last)
        elif isinstance(event, GtidEvent):
            tracker.gtid(None)
        elif isinstance(event, HeartbeatLogEvent):
            yield "tick", None, 0
        if ended:
            last = end
            yield "boundary", Boundary(end, held.resume(end)), ts


def _query(sql: str, schema: str, database: str | None, held: XaHold, last: Position,
           at: Position, end: Position, ts: int) -> Iterator[tuple[str, Any, int]]:
    """A Query event (starting `at`): XA START / COMMIT / ROLLBACK, a TRUNCATE to
    replicate, or a statement to stop at."""
    if resolution := xa_resolution(sql):
        commit, xid = resolution
        if changes := held.resolve(xid, commit):
            yield "rows", changes, ts
        return
    if xa_start(sql):
        held.begin(last)
        return
    verdict = classify(sql, schema, database, TABLE_KEYS)
    if verdict is None:
        return
    if verdict.action is Action.TRUNCATE:
        yield "truncate", (verdict.table, end), ts
        return
    raise UnreplicableStatement(verdict.kind, verdict.table, at)


def _statement(event: Any) -> tuple[str, str]:
    """(default schema, SQL text) of a Query event, or of an Execute_load_query event (LOAD
    DATA logged as a statement), whose text the library leaves unread: after its 26-byte
    post-header come the status variables, the schema, a NUL and the text."""
    if isinstance(event, QueryEvent):
        return event.schema.decode("utf-8", "replace"), event.query
    packet = event.packet
    packet.advance(event.status_vars_length)
    schema = packet.read(event.schema_length).decode("utf-8", "replace")
    packet.advance(1)
    size = event.event_size - 26 - event.status_vars_length - event.schema_length - 1
    return schema, packet.read(size).decode("utf-8", "backslashreplace")
