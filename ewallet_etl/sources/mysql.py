"""The MySQL/MariaDB source: connections, the server's clock, and chunked Arrow reads.

Control statements (clock, checkpoint, preflight) go through PyMySQL; bulk reads stream through
connectorx as Arrow record batches of `chunk_rows` rows, so memory stays flat as tables grow.
connectorx has no parameter API, so its statements are bound with PyMySQL's own escaping
(`bind`), exactly what PyMySQL's `cursor.execute(sql, params)` does; no value is formatted by
hand. Every session runs in UTC (`time_zone = '+00:00'`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Iterator, TypeVar
from urllib.parse import quote

import pyarrow as pa
import pymysql
from pymysql.converters import escape_item

from ewallet_etl.config import Settings
from ewallet_etl.core.errors import first_line
from ewallet_etl.retry import TransientError
from ewallet_etl.sources.arrow_memory import give_back_large_buffers

log = logging.getLogger(__name__)
T = TypeVar("T")

UTC_SESSION = "SET time_zone = '+00:00'"

# Dimensions: everything changed since the window's lower bound, with no upper bound, read
# before the facts, so every fact of the window finds its dimension row in the warehouse.
USERS_SQL = """
SELECT user_id, name, email, city, updated_at
FROM users
WHERE updated_at >= %(low)s
"""

MERCHANTS_SQL = """
SELECT merchant_id, name, category, city, updated_at
FROM merchants
WHERE updated_at >= %(low)s
"""

# Whether a dimension has rows changed since the window's lower bound: an index probe that
# spares opening a connectorx reader (a connection of its own, ~10 ms) when there are none,
# the usual case of an incremental run.
CHANGED_SINCE_SQL = {
    "users": "SELECT 1 FROM users WHERE updated_at >= %s LIMIT 1",
    "merchants": "SELECT 1 FROM merchants WHERE updated_at >= %s LIMIT 1",
}

# A DATETIME that is no date ('0000-00-00 00:00:00', '2025-02-30 10:00:00': MariaDB stores them
# under a lax sql_mode) makes date arithmetic NULL; a real one is unchanged by it (reconcile's
# days). The readers (connectorx, PyMySQL) cannot convert such a value as a DATETIME.
VALID_TIME = "(t.transaction_time + INTERVAL 0 SECOND <=> t.transaction_time)"

# Facts: the half-open window [low, high) on the change column. Whether each row's user and
# merchant exist is asked separately (`source_ids`), once per distinct id.
# transaction_time as the number YYYYMMDDhhmmss (`+ 0`): as cheap as the DATETIME itself, and a
# value that is no date arrives as a number too (transform.decode_times refuses it, with its text).
TRANSACTIONS_COLUMNS = """
SELECT t.transaction_id, t.user_id, t.merchant_id, t.amount, t.status,
       t.transaction_time + 0 AS transaction_time, t.updated_at
FROM transactions AS t
"""
TRANSACTIONS_SQL = TRANSACTIONS_COLUMNS + """\
WHERE t.updated_at >= %(low)s AND t.updated_at < %(high)s
"""
# The same window when it starts at the epoch (a first load, a full refresh): the whole table,
# read in pages of its primary key (`stream`), through that key whatever the statistics say
# (left to itself, MariaDB may page a 1M-row table through the updated_at index, sorting the
# whole window for every page: 3.7 s instead of 1.5).
TRANSACTIONS_KEY = "t.transaction_id"
TRANSACTIONS_SCAN_SQL = TRANSACTIONS_SQL.replace(
    "FROM transactions AS t", "FROM transactions AS t FORCE INDEX (PRIMARY)")


def transactions_read(paged: bool) -> tuple[str, str | None]:
    """The statement reading a window of transactions, and the key `stream` pages it on: the
    whole table in pages of its primary key, or one statement (key None)."""
    if paged:
        return TRANSACTIONS_SCAN_SQL, TRANSACTIONS_KEY
    return TRANSACTIONS_SQL, None

# A backfill: the transactions of whole days of transaction_time, whatever their change time.
TRANSACTIONS_BY_DAY_SQL = TRANSACTIONS_COLUMNS + """\
WHERE t.transaction_time >= %(since)s AND t.transaction_time < %(until)s
"""
# What a window holds, counted without reading it (a dry run).
WINDOW_COUNT_SQL = {
    "transactions": ("SELECT COUNT(*) FROM transactions "
                     "WHERE updated_at >= %(low)s AND updated_at < %(high)s"),
    "users": "SELECT COUNT(*) FROM users WHERE updated_at >= %(low)s",
    "merchants": "SELECT COUNT(*) FROM merchants WHERE updated_at >= %(low)s",
}

# The change columns the watermark follows. Each must be a TIMESTAMP: the server keeps it as a
# UTC instant whatever the writer session's time zone. A DATETIME set by CURRENT_TIMESTAMP holds
# the writer's wall clock: a session at -05:00 writes rows five hours below the checkpoint
# (never loaded) and a refund older than the sale it replaces.
CHANGE_COLUMNS = (("users", "updated_at"), ("merchants", "updated_at"),
                  ("transactions", "updated_at"))
CHANGE_COLUMN_TYPES_SQL = """
SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = DATABASE() AND COLUMN_NAME = 'updated_at'
  AND TABLE_NAME IN ('users', 'merchants', 'transactions')
"""


class SourceError(RuntimeError):
    """The source failed; the message names host and database, never the password."""


class SourceUnavailable(SourceError, TransientError):
    """MySQL could not be reached or dropped the connection."""


class RunInProgress(SourceError):
    """Another run of the same pipeline holds its run lock: this one does nothing."""


class SourceSchemaError(SourceError):
    """The source's schema cannot be read safely: a usage problem, not a failed run."""

    exit_code = 2


def check_change_columns(conn: pymysql.connections.Connection) -> None:
    """Refuse change columns that are not TIMESTAMPs (see CHANGE_COLUMNS), or missing."""
    with conn.cursor() as cur:
        cur.execute(CHANGE_COLUMN_TYPES_SQL)
        found = {(table, column): kind.lower() for table, column, kind in cur.fetchall()}
    problems = []
    for table, column in CHANGE_COLUMNS:
        kind = found.get((table, column))
        if kind == "timestamp":
            continue
        problems.append(
            f"{table}.{column} is {kind.upper() if kind else 'missing'}, it must be TIMESTAMP(6) "
            f"(fix: ALTER TABLE {table} MODIFY {column} TIMESTAMP(6) NOT NULL DEFAULT "
            f"CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), in a session whose time_zone "
            f"is the one the DATETIME values were written in)")
    if problems:
        raise SourceSchemaError(
            "change columns must be TIMESTAMP so that changes written in any time zone are "
            "ordered and found: " + "; ".join(problems))


# Client error codes that mean "the server is not there (any more)": worth a retry.
UNREACHABLE_CODES = {2003, 2005, 2006, 2013, 2055}


def connection_args(settings: Settings) -> dict[str, Any]:
    """How every PyMySQL connection of this project reaches the source (the binlog reader's
    too): the server and account, utf8mb4, a 5 s connect timeout."""
    return {"host": settings.mysql_host, "port": settings.mysql_port,
            "user": settings.mysql_user, "password": settings.mysql_password,
            "charset": "utf8mb4", "connect_timeout": 5}


def connect(settings: Settings, **extra: Any) -> pymysql.connections.Connection:
    """A connection to the source database, autocommit, in a UTC session (`extra` overrides)."""
    try:
        return pymysql.connect(**{**connection_args(settings), "database": settings.mysql_database,
                                  "autocommit": True, "init_command": UTC_SESSION, **extra})
    except pymysql.MySQLError as exc:
        raise source_error(settings, exc) from exc


class ControlConnection:
    """A run's one PyMySQL connection for control statements (checkpoint, clock, id checks):
    checked with a ping before each step and opened again if it dropped. One connect per run
    instead of one per step, and a step still fails at once when MySQL is unreachable.

    With `lock=True` it also holds the pipeline's run lock (`run_lock_name`), a MySQL named
    lock that lives as long as the connection: taken on every (re)connect without waiting, so
    a run whose connection dropped while another run took the lock stops at its next step,
    before its checkpoint. A killed run's lock goes with its connection."""

    def __init__(self, settings: Settings, lock: bool = False) -> None:
        self._settings = settings
        self._lock = run_lock_name(settings) if lock else None
        self._conn: pymysql.connections.Connection | None = None

    def get(self) -> pymysql.connections.Connection:
        if self._conn is not None and self._conn.open:
            try:
                self._conn.ping(reconnect=False)
                return self._conn
            except pymysql.MySQLError:
                self.close()
        conn = connect(self._settings)
        if self._lock is not None:
            try:
                _take_run_lock(conn, self._settings, self._lock)
            except BaseException:
                conn.close()
                raise
        self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None and self._conn.open:
            self._conn.close()
        self._conn = None


# The lock lives as long as its connection. A run that vanished without closing it (a network
# cut leaves the server's end open) would hold it until the server drops the idle connection:
# wait_timeout, 8 hours by default. The locking connection asks for this instead; a live run
# that idles longer (during a long facts stream) simply reconnects and takes the lock again.
RUN_LOCK_IDLE_SECONDS = 300


def run_lock_name(settings: Settings) -> str:
    """The MySQL named lock of one pipeline on one source database (the server's lock names are
    server-wide, at most 64 characters: longer ones are hashed)."""
    name = f"ewallet_etl:{settings.mysql_database}:{settings.pipeline_name}"
    if len(name) <= 64:
        return name
    return "ewallet_etl:" + hashlib.sha256(name.encode()).hexdigest()[:52]


def _take_run_lock(conn: pymysql.connections.Connection, settings: Settings, name: str) -> None:
    try:
        fetch_one(conn, "SET SESSION wait_timeout = %s", (RUN_LOCK_IDLE_SECONDS,))
        taken, holder = fetch_one(conn, "SELECT GET_LOCK(%s, 0), IS_USED_LOCK(%s)", (name, name))
    except pymysql.MySQLError as exc:
        raise source_error(settings, exc) from exc
    if taken != 1:
        raise RunInProgress(
            f"another run of pipeline {settings.pipeline_name!r} on {where(settings)} is in "
            f"progress (MySQL connection {holder} holds the lock {name!r}); this run stops "
            f"here and leaves the checkpoint alone")


def source_error(settings: Settings, exc: BaseException) -> SourceError:
    """A PyMySQL error as a SourceError naming the server (SourceUnavailable if retryable)."""
    kind = SourceUnavailable if _code(exc) in UNREACHABLE_CODES else SourceError
    return kind(f"MySQL at {where(settings)}: {_reason(exc)}")


def _code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def where(settings: Settings) -> str:
    return f"{settings.mysql_host}:{settings.mysql_port}/{settings.mysql_database}"


def _reason(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[1], str):
        return f"({args[0]}) {args[1]}"
    return first_line(exc)


def bind(sql: str, params: dict[str, Any]) -> str:
    """Bind `%(name)s` placeholders for connectorx, which has no parameter API.

    Numbers, dates and datetimes (tz-aware ones converted to naive UTC, microseconds kept) use
    PyMySQL's escaping, what `cursor.execute` sends: digits and separators only. Strings become
    hex literals with a charset introducer (`_utf8mb4 X'...'`): quotes, backslashes and `%` have
    no meaning inside them, whatever the session's sql_mode (backslash escaping, PyMySQL's way
    for strings, is wrong under NO_BACKSLASH_ESCAPES). Any other type is refused.
    """
    return sql % {name: _literal(value) for name, value in params.items()}


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "_utf8mb4 X'" + value.encode("utf-8").hex() + "'"
    if isinstance(value, (bytes, bytearray)):
        return "X'" + bytes(value).hex() + "'"
    if value is None or isinstance(value, (bool, int, float, Decimal, date)):
        return escape_item(_naive_utc(value), "utf8mb4")
    raise TypeError(f"cannot bind a {type(value).__name__} for connectorx")


def _naive_utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def fetch_one(conn: pymysql.connections.Connection, sql: str, params: tuple = ()) -> tuple | None:
    with conn.cursor() as cur:
        cur.execute(sql, tuple(_naive_utc(p) for p in params))
        return cur.fetchone()


def changed_since(conn: pymysql.connections.Connection, table: str, low: datetime) -> bool:
    return fetch_one(conn, CHANGED_SINCE_SQL[table], (low,)) is not None


def window_bounds(conn: pymysql.connections.Connection) -> tuple[datetime, datetime | None]:
    """What bounds a window on the source: its clock and its oldest open writing transaction
    (`oldest_open_transaction` looked up at call time: the tests narrow it to their database)."""
    return db_clock(conn), oldest_open_transaction(conn)


def binlog_end(conn: pymysql.connections.Connection) -> str | None:
    """The source's current end of binlog as `file:position`, or None when it has no binlog
    (or the user may not ask)."""
    for statement in ("SHOW MASTER STATUS", "SHOW BINARY LOG STATUS"):  # MySQL 8.2+: the latter
        try:
            row = fetch_one(conn, statement)
        except pymysql.MySQLError as exc:
            if _code(exc) in UNREACHABLE_CODES:
                raise
            continue
        return f"{row[0]}:{row[1]}" if row else None
    return None


def db_clock(conn: pymysql.connections.Connection) -> datetime:
    """The source's "now" in UTC: window bounds never come from the ETL host's clock."""
    (now,) = fetch_one(conn, "SELECT UTC_TIMESTAMP(6)")
    return now.replace(tzinfo=timezone.utc)


# Writers only: transactions that modified rows, locked rows (an UPDATE or DELETE scanning, a
# locking read) or wait for a row lock. Such a statement has fixed its CURRENT_TIMESTAMP already,
# possibly before now. A plain reader (a snapshot, a report, another ETL's SELECT) stamps any
# later write at its next statement, after now, and must not hold the window back. Left to the
# overlap: a writer that has neither locked nor modified a row yet (an INSERT ... SELECT under
# READ COMMITTED still reading its first row).
OLDEST_TRX_SQL = (
    "SELECT MIN(trx_started) FROM information_schema.INNODB_TRX "
    "WHERE trx_mysql_thread_id <> CONNECTION_ID() "
    "AND (trx_rows_modified > 0 OR trx_rows_locked > 0 OR trx_state = 'LOCK WAIT')"
)


def oldest_open_transaction(conn: pymysql.connections.Connection,
                            database: str | None = None) -> datetime | None:
    """Start of the oldest open InnoDB transaction, or None if none / not visible.

    Rows such a transaction writes carry change times at or after its start but become
    visible only at commit: the watermark must stay below it. Needs the PROCESS privilege;
    without it the lag and overlap windows are the only protection (logged once).
    The whole server's transactions count (a session may write into any database); `database`
    narrows them to sessions using that one, for tests sharing a server with other people's.
    """
    sql = OLDEST_TRX_SQL
    params: tuple = ()
    if database is not None:
        sql += (" AND trx_mysql_thread_id IN "
                "(SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s)")
        params = (database,)
    try:
        row = fetch_one(conn, sql, params)
    except pymysql.MySQLError as exc:
        if _code(exc) in UNREACHABLE_CODES:  # a dropped connection is not a missing privilege
            raise
        log.warning("cannot read INNODB_TRX (%s); relying on lag and overlap only", _reason(exc))
        return None
    return row[0].replace(tzinfo=timezone.utc) if row and row[0] else None


def connectorx_url(settings: Settings) -> str:
    """The connectorx URL. `prefer_socket=false`: connectorx's MySQL driver otherwise asks a
    127.0.0.1/localhost server for `@@socket` and reconnects through that Unix socket, which on
    a forwarded port (a container, a tunnel) can be another server than MYSQL_HOST:MYSQL_PORT,
    the one PyMySQL reads the clock and the checkpoint from."""
    user = quote(settings.mysql_user, safe="")
    password = quote(settings.mysql_password, safe="")
    return (
        f"mysql://{user}:{password}@{settings.mysql_host}:{settings.mysql_port}"
        f"/{settings.mysql_database}?prefer_socket=false"
    )


# connectorx error texts that mean the connection failed or dropped (worth a retry).
CONNECTORX_TRANSIENT = (
    "IO error", "os error", "Connection refused", "Connection reset", "Broken pipe",
    "timed out", "Lost connection", "gone away", "bytes remaining on stream",
)


# Keys a read pages through (identifiers from this list only).
PAGE_KEYS = (TRANSACTIONS_KEY,)
# connectorx queues the record batches it has read without bound when it outruns the consumer
# (a slower warehouse): a 10M-row chDB load held up to ~250 MiB of batches read ahead. So a
# read of a whole table for such a warehouse (`Warehouse.paged_reads`) runs as a series of
# statements of at most this many chunks each, paged through the primary key: what is read
# ahead stays within one page, whatever the table's size. Two chunks, not four: ~20 MiB less
# at the peak of a 10M-row chDB load, for ~1 s more. A window's read (an incremental run)
# stays one statement, sized by the changes it holds.
PAGE_CHUNKS = 2


def stream(settings: Settings, sql: str, params: dict[str, Any],
           key: str | None) -> Iterator[pa.Table]:
    """Run a SELECT and yield its rows as Arrow tables of at most `chunk_rows` rows.

    `sql` ends in a WHERE clause; with a `key` (one of PAGE_KEYS, a column it selects) it runs
    as pages in the key's order (`AND key > last ORDER BY key LIMIT page`), each page a
    statement of its own, opened as soon as the page before has handed over its last chunk
    (its LIMIT reached), so that its first rows arrive while that chunk is loaded; no chunk
    waits for the one after it. The pages cover every row exactly once: a row's key never
    changes (a changed primary key is a delete and an insert). Without a key, one statement:
    a window's read, or any read for a warehouse that keeps pace (`Warehouse.paged_reads`).

    Errors surface as one SourceError line naming the server (SourceUnavailable when the
    connection failed or dropped), never the password. connectorx reports a connection lost
    mid-stream as a Rust panic (`PanicException`, a BaseException) and prints the panic, with a
    backtrace under RUST_BACKTRACE, straight to file descriptor 2: each call into it runs with
    that descriptor pointed at a scratch file, whose text is logged at DEBUG. Its pool's own log
    lines go to the same scratch file. Limit: a refused connection makes connectorx's pool
    retry for ~30 s before failing; `run_batch` probes with PyMySQL first, which fails at once.
    """
    if key is not None and key not in PAGE_KEYS:
        raise ValueError(f"not a key to page on: {key!r}")
    with tempfile.TemporaryFile() as scratch:
        try:
            if key is None:
                yield from _chunks(scratch, _open(scratch, settings, sql, params))
            else:
                yield from _pages(scratch, settings, sql, params, key)
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # PanicException derives from BaseException
            raise _connectorx_error(settings, exc) from exc


def _pages(scratch: Any, settings: Settings, sql: str, params: dict[str, Any],
           key: str) -> Iterator[pa.Table]:
    page_rows = settings.chunk_rows * PAGE_CHUNKS
    column = key.rpartition(".")[2]
    reader: Any = _open(scratch, settings, _page_sql(sql, key, False, page_rows), params)
    while reader is not None:
        rows, following = 0, None
        for chunk in _chunks(scratch, reader):
            rows += chunk.num_rows
            if rows >= page_rows:  # the page's LIMIT reached: its last chunk, more may follow
                after = chunk.column(column)[-1].as_py()
                following = _open(scratch, settings, _page_sql(sql, key, True, page_rows),
                                  {**params, "after": after})
            yield chunk
        reader = following


def _page_sql(sql: str, key: str, after: bool, page_rows: int) -> str:
    """`sql` (ending in its WHERE clause) restricted to one page; `key` from PAGE_KEYS."""
    return (sql.rstrip() + (f"\nAND {key} > %(after)s" if after else "")
            + f"\nORDER BY {key} LIMIT {page_rows:d}")


def _open(scratch: Any, settings: Settings, sql: str, params: dict[str, Any]) -> Any:
    """Start one SELECT: connectorx reads its record batches in a thread of its own."""
    import connectorx as cx

    give_back_large_buffers()
    return _quiet(scratch, lambda: cx.read_sql(
        connectorx_url(settings),
        bind(sql, params),
        return_type="arrow_stream",
        batch_size=settings.chunk_rows,
        pre_execution_query=[UTC_SESSION],
    ))


def _chunks(scratch: Any, reader: Any) -> Iterator[pa.Table]:
    while (batch := _quiet(scratch, lambda: next(reader, None))) is not None:
        if batch.num_rows:
            yield pa.Table.from_batches([batch])


def _quiet(scratch: Any, call: Callable[[], T]) -> T:
    """Run `call` with file descriptor 2 sent to `scratch`; log what landed there at DEBUG."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(scratch.fileno(), 2)
    try:
        return call()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        if scratch.tell():
            scratch.seek(0)
            log.debug("connectorx said: %s", scratch.read().decode("utf-8", "replace").strip())
            scratch.seek(0)
            scratch.truncate()


def _connectorx_error(settings: Settings, exc: BaseException) -> SourceError:
    text = str(exc) or type(exc).__name__
    if settings.mysql_password:  # connectorx messages may quote the URL
        for secret in (quote(settings.mysql_password, safe=""), settings.mysql_password):
            text = text.replace(secret, "***")
    transient = any(mark.lower() in text.lower() for mark in CONNECTORX_TRANSIENT)
    kind = SourceUnavailable if transient else SourceError
    return kind(f"MySQL at {where(settings)}: {text.strip().splitlines()[0]}")
