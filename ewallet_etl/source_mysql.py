"""The MySQL/MariaDB source: connections, the server's clock, and chunked Arrow reads.

Control statements (clock, checkpoint, preflight) go through PyMySQL; bulk reads stream through
connectorx as Arrow record batches of `chunk_rows` rows, so memory stays flat as tables grow.
connectorx has no parameter API, so its statements are bound with PyMySQL's own escaping
(`bind`), exactly what PyMySQL's `cursor.execute(sql, params)` does; no value is formatted by
hand. Every session runs in UTC (`time_zone = '+00:00'`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Iterator
from urllib.parse import quote

import pyarrow as pa
import pymysql
from pymysql.converters import escape_item

from .config import Settings
from .retry import TransientError

log = logging.getLogger(__name__)

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

# Facts: the half-open window [low, high) on the change column. The LEFT JOINs tell the
# transform whether each row's dimensions exist (a source without FK checks may lack them).
TRANSACTIONS_SQL = """
SELECT t.transaction_id, t.user_id, t.merchant_id, t.amount, t.status,
       t.transaction_time, t.updated_at,
       (u.user_id IS NOT NULL) AS user_found,
       (m.merchant_id IS NOT NULL) AS merchant_found
FROM transactions AS t
LEFT JOIN users AS u ON u.user_id = t.user_id
LEFT JOIN merchants AS m ON m.merchant_id = t.merchant_id
WHERE t.updated_at >= %(low)s AND t.updated_at < %(high)s
"""


class SourceError(RuntimeError):
    """The source failed; the message names host and database, never the password."""


class SourceUnavailable(SourceError, TransientError):
    """MySQL could not be reached or dropped the connection."""


# Client error codes that mean "the server is not there (any more)": worth a retry.
UNREACHABLE_CODES = {2003, 2005, 2006, 2013, 2055}


def connect(settings: Settings) -> pymysql.connections.Connection:
    try:
        return pymysql.connect(
            host=settings.mysql_host,
            port=settings.mysql_port,
            user=settings.mysql_user,
            password=settings.mysql_password,
            database=settings.mysql_database,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=5,
            init_command=UTC_SESSION,
        )
    except pymysql.MySQLError as exc:
        kind = SourceUnavailable if _code(exc) in UNREACHABLE_CODES else SourceError
        raise kind(f"MySQL at {where(settings)}: {_reason(exc)}") from exc


def _code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def where(settings: Settings) -> str:
    return f"{settings.mysql_host}:{settings.mysql_port}/{settings.mysql_database}"


def _reason(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[1], str):
        return f"({args[0]}) {args[1]}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def bind(sql: str, params: dict[str, Any]) -> str:
    """Bind `%(name)s` placeholders with PyMySQL's escaping (what cursor.execute does)."""
    return sql % {name: escape_item(_naive_utc(value), "utf8mb4") for name, value in params.items()}


def _naive_utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def fetch_one(conn: pymysql.connections.Connection, sql: str, params: tuple = ()) -> tuple | None:
    with conn.cursor() as cur:
        cur.execute(sql, tuple(_naive_utc(p) for p in params))
        return cur.fetchone()


def db_clock(conn: pymysql.connections.Connection) -> datetime:
    """The source's "now" in UTC: window bounds never come from the ETL host's clock."""
    (now,) = fetch_one(conn, "SELECT UTC_TIMESTAMP(6)")
    return now.replace(tzinfo=timezone.utc)


def oldest_open_transaction(conn: pymysql.connections.Connection) -> datetime | None:
    """Start of the oldest open InnoDB transaction, or None if none / not visible.

    Rows such a transaction writes carry change times at or after its start but become
    visible only at commit: the watermark must stay below it. Needs the PROCESS privilege;
    without it the lag and overlap windows are the only protection (logged once).
    """
    try:
        row = fetch_one(
            conn,
            "SELECT MIN(trx_started) FROM information_schema.INNODB_TRX "
            "WHERE trx_mysql_thread_id <> CONNECTION_ID()",
        )
    except pymysql.MySQLError as exc:
        log.warning("cannot read INNODB_TRX (%s); relying on lag and overlap only", _reason(exc))
        return None
    return row[0].replace(tzinfo=timezone.utc) if row and row[0] else None


def connectorx_url(settings: Settings) -> str:
    user = quote(settings.mysql_user, safe="")
    password = quote(settings.mysql_password, safe="")
    return (
        f"mysql://{user}:{password}@{settings.mysql_host}:{settings.mysql_port}"
        f"/{settings.mysql_database}"
    )


def stream(settings: Settings, sql: str, params: dict[str, Any]) -> Iterator[pa.Table]:
    """Run one SELECT and yield its rows as Arrow tables of at most `chunk_rows` rows."""
    import connectorx as cx

    try:
        reader = cx.read_sql(
            connectorx_url(settings),
            bind(sql, params),
            return_type="arrow_stream",
            batch_size=settings.chunk_rows,
            pre_execution_query=[UTC_SESSION],
        )
        for batch in reader:
            if batch.num_rows:
                yield pa.Table.from_batches([batch])
    except (RuntimeError, OSError) as exc:
        # connectorx messages may quote the URL: keep only what is safe to show.
        message = str(exc).replace(settings.mysql_password, "***") if settings.mysql_password else str(exc)
        raise SourceError(f"MySQL at {where(settings)}: {message.splitlines()[0]}") from exc
