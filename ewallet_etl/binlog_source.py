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
from typing import Any, Iterator

import pymysql
import pymysql.cursors
from pymysql.connections import Connection
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.constants import NONE_SOURCE
from pymysqlreplication.event import (
    FormatDescriptionEvent, GtidEvent, HeartbeatLogEvent, MariadbGtidEvent, QueryEvent,
    RotateEvent, XidEvent,
)
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from .binlog_state import BoundaryTracker, Position, version
from .config import Settings
from .events import ChangeEvent, Op
from .retry import TransientError
from .source_mysql import (
    UNREACHABLE_CODES, UTC_SESSION, SourceError, SourceUnavailable, where,
)

log = logging.getLogger(__name__)

# The replicated tables and their primary keys (the allow-list for identifiers, too).
TABLE_KEYS = {"transactions": "transaction_id", "users": "user_id", "merchants": "merchant_id"}
WANTED_EVENTS = [
    RotateEvent, FormatDescriptionEvent, GtidEvent, MariadbGtidEvent, QueryEvent, XidEvent,
    WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, HeartbeatLogEvent,
]
# The dump session may wait on a slow apply; the server's 60 s default would cut it off.
DUMP_SESSION = "SET SESSION net_write_timeout = 600, net_read_timeout = 600"


class StreamInterrupted(TransientError):
    """The dump connection dropped; restart from the saved position."""


class StreamError(SourceError):
    """The binlog holds something we must not apply (an incomplete or nameless row image)."""


def _mysql_error(settings: Settings, exc: pymysql.MySQLError) -> SourceError:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    kind = SourceUnavailable if code in UNREACHABLE_CODES else SourceError
    return kind(f"MySQL at {where(settings)}: {exc.args[-1] if exc.args else exc}")


def control_connection(settings: Settings, **extra: Any) -> pymysql.connections.Connection:
    try:
        return pymysql.connect(
            host=settings.mysql_host, port=settings.mysql_port, user=settings.mysql_user,
            password=settings.mysql_password, database=settings.mysql_database,
            charset="utf8mb4", connect_timeout=5, init_command=UTC_SESSION,
            **{"autocommit": True, **extra},
        )
    except pymysql.MySQLError as exc:
        raise _mysql_error(settings, exc) from exc


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
        raise _mysql_error(settings, exc) from exc
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
        connection_settings={
            "host": settings.mysql_host, "port": settings.mysql_port,
            "user": settings.mysql_user, "password": settings.mysql_password,
            "charset": "utf8mb4", "connect_timeout": 5, "read_timeout": max(30, 4 * heartbeat),
        },
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
    changes: list[ChangeEvent] = []
    for index, row in enumerate(event.rows):
        v = version(end, index)
        if isinstance(event, UpdateRowsEvent):
            before, after = _checked(row, "before_"), _checked(row, "after_")
            if before[key] != after[key]:  # a key change: the old key leaves
                changes.append(ChangeEvent(Op.DELETE, table, str(before[key]), before, v))
            changes.append(ChangeEvent(Op.UPDATE, table, str(after[key]), after, v))
        else:
            values = _checked(row, "")
            op = Op.DELETE if isinstance(event, DeleteRowsEvent) else Op.INSERT
            changes.append(ChangeEvent(op, table, str(values[key]), values, v))
    return changes


def _checked(row: dict[str, Any], prefix: str) -> dict[str, Any]:
    none_sources = row.get(prefix + "none_sources")
    if none_sources and NONE_SOURCE.COLS_BITMAP in none_sources.values():
        raise StreamError("a rows event has an incomplete row image: set binlog_row_image=FULL "
                          "(and check no session sets it to MINIMAL)")
    return row[prefix + "values"]


def read_changes(reader: BinLogStreamReader, start: Position) -> Iterator[tuple[str, Any, int]]:
    """Yield ("rows", [ChangeEvent], ts), ("boundary", Position, ts) after every transaction
    and ("tick", None, ts) on heartbeats; ts is the event's source timestamp (0 if none)."""
    file, tracker = start.file, BoundaryTracker()
    for event in reader:
        end = Position.of(file, event.packet.log_pos) if event.packet.log_pos else None
        if isinstance(event, RotateEvent):
            file = event.next_binlog
            if event.timestamp:  # a real rotation (the dump's opening one has no timestamp)
                yield "boundary", Position.of(file, event.position), event.timestamp
        elif isinstance(event, (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)):
            yield "rows", row_changes(event, end), event.timestamp
        elif isinstance(event, XidEvent):
            tracker.xid()
            yield "boundary", end, event.timestamp
        elif isinstance(event, QueryEvent):
            if tracker.query(event.query):
                yield "boundary", end, event.timestamp
        elif isinstance(event, MariadbGtidEvent):
            tracker.gtid(event.flags)
        elif isinstance(event, GtidEvent):
            tracker.gtid(None)
        elif isinstance(event, HeartbeatLogEvent):
            yield "tick", None, 0
