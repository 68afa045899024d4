"""The warehouse seam: one small Protocol, two engines.

* `ClickHouseServer` talks to a ClickHouse server over the native protocol (clickhouse-driver).
  Tested against 18.16 (Debian's package) and meant for current servers too.
* `ChdbWarehouse` runs ClickHouse in-process (chDB 26.x) on a data folder.

One SQL dialect for both: statements name the warehouse database `analytics_dw` (swapped for the
configured database by `qualify`) and bind values as ClickHouse parameters `{name:Type}`; chDB
binds them natively, clickhouse-driver gets them as `%(name)s` and escapes them itself (18.16
has no server-side parameters). No value is ever formatted into SQL text by this project.

Limits of the chDB engine (documented by chDB, checked here): one data folder per process at a
time, and no second process on the same folder while one has it open. Inserts go through
`INSERT ... SELECT FROM Python(arrow_table)`.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Protocol

import pyarrow as pa

from .config import IDENTIFIER, WarehouseTarget
from .retry import TransientError

if TYPE_CHECKING:
    from .ch_native import ArrowInsertClient

# clickhouse-driver fills a 146,000-entry date table at import (70 ms, 23 MiB) unless told to
# fill it on demand; dates are written by ch_native and rarely read back. Set before it is
# imported, which happens only for a ClickHouse server target (a chDB run never loads it).
os.environ.setdefault("CLICKHOUSE_DRIVER_LASY_DATE_LUT", "1970-01-01:1970-01-01")

log = logging.getLogger(__name__)

WAREHOUSE_DB_TOKEN = re.compile(r"\banalytics_dw\b")
PARAM = re.compile(r"\{(\w+):[^}]+\}")
# Tables the pipeline writes; inserts into anything else are refused.
WRITABLE_TABLES = frozenset(
    {"dim_users", "dim_merchants", "fact_sales", "cdc_transactions", "etl_quarantine", "etl_runs"}
    | {"etl_watermarks"}
    | {"cdc_users", "cdc_merchants", "cdc_state"}  # binlog CDC (ewallet_etl/binlog_*.py)
    | {"cdc_lineage"}  # which version scheme feeds a replica (ewallet_etl/cdc_lineage.py)
)


class WarehouseError(RuntimeError):
    """The warehouse failed; the message names the engine and never carries a secret."""


class WarehouseUnavailable(WarehouseError, TransientError):
    """The ClickHouse server could not be reached or dropped the connection."""


class Warehouse(Protocol):
    database: str
    engine: str

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None: ...

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]: ...

    def query_with_names(self, sql: str) -> tuple[list[str], list[tuple]]: ...

    def insert(self, table: str, rows: pa.Table) -> None: ...

    def insert_stream(self, table: str, chunks: Iterable[pa.Table]) -> None: ...

    def close(self) -> None: ...


def qualify(sql: str, database: str) -> str:
    """Point a statement written for `analytics_dw` at `database` (a validated identifier)."""
    if not IDENTIFIER.match(database):
        raise ValueError(f"invalid database name {database!r}")
    return WAREHOUSE_DB_TOKEN.sub(database, sql)


def split_statements(script: str) -> list[str]:
    """Split a .sql file on `;` at line ends, dropping `--` comment lines."""
    lines = [ln for ln in script.splitlines() if not ln.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";\n") if s.strip().rstrip(";").strip()]


def apply_sql_file(wh: Warehouse, path: Path) -> None:
    for statement in split_statements(path.read_text()):
        wh.execute(statement.rstrip(";"))


def _insert_target(table: str, rows: pa.Table) -> tuple[str, str]:
    """(table, column list) for an INSERT, both checked against the allow-list / identifier rule."""
    if table not in WRITABLE_TABLES:
        raise ValueError(f"refusing to insert into unknown table {table!r}")
    bad = [name for name in rows.column_names if not IDENTIFIER.match(name)]
    if bad:
        raise ValueError(f"invalid column names {bad!r}")
    return table, ", ".join(rows.column_names)


# A streamed INSERT is squashed by the server into parts of at least this many rows. The
# default (1,048,576) makes the server write a million rows at the end, while the client
# waits; a quarter of that overlaps the writes with the chunks still being produced (measured
# on 1.2M rows: 1.48 s instead of 1.74 s, and less server CPU, not more).
STREAM_INSERT_SETTINGS = {"min_insert_block_size_rows": 262_144}


class ClickHouseServer:
    engine = "clickhouse-server"

    def __init__(self, target: WarehouseTarget) -> None:
        self.database = target.database
        self._where = target.describe()
        self._client_args = dict(
            host=target.host,
            port=target.port,
            user=target.user,
            password=target.password,
            connect_timeout=5,
            send_receive_timeout=300,
            settings={"strings_as_bytes": False},
        )
        from .ch_native import ArrowInsertClient

        self._client = ArrowInsertClient(**self._client_args)
        self._stream_client: ArrowInsertClient | None = None

    def _run(self, sql: str, params: Any, **kwargs: Any) -> Any:
        text = qualify(sql, self.database)
        if isinstance(params, dict):
            text = PARAM.sub(r"%(\1)s", text)
        try:
            return self._client.execute(text, params or None, **kwargs)
        except Exception as exc:
            raise self._error(exc) from exc

    def _error(self, exc: BaseException) -> WarehouseError:
        from clickhouse_driver.errors import NetworkError, SocketTimeoutError

        if isinstance(exc, (NetworkError, SocketTimeoutError, EOFError, OSError)):
            return WarehouseUnavailable(f"ClickHouse at {self._where}: {_first_line(exc)}")
        # driver errors carry no password; name the target instead
        return WarehouseError(f"ClickHouse at {self._where}: {_first_line(exc)}")

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._run(sql, params)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        return self._run(sql, params)

    def query_with_names(self, sql: str) -> tuple[list[str], list[tuple]]:
        rows, types = self._run(sql, None, with_column_types=True)
        return [name for name, _ in types], rows

    def insert(self, table: str, rows: pa.Table) -> None:
        if rows.num_rows == 0:
            return
        table, names = _insert_target(table, rows)
        # Encoded straight from the Arrow buffers by the server's column types (int64 cents for
        # Decimal(18, 2), no Python object per value); see ch_native.
        from .ch_native import ArrowRows

        data = [ArrowRows(rows, _driver_column)]
        self._run(f"INSERT INTO analytics_dw.{table} ({names}) VALUES", data, columnar=True)

    def insert_stream(self, table: str, chunks: Iterable[pa.Table]) -> None:
        """All chunks through one INSERT, on a connection of its own (so `insert` stays usable
        while the chunks are produced). The server parses each block as it arrives and squashes
        them into larger parts (STREAM_INSERT_SETTINGS): fewer parts than one INSERT per chunk
        (which cost the server 0.4 CPU-s more per million rows), and the client computes chunk
        N+1 while the server takes chunk N.
        An error raised by `chunks` itself (the source failing) comes out unchanged; either way
        the INSERT is abandoned and rows the server had not yet written are dropped."""
        chunks = iter(chunks)
        first = next(chunks, None)
        if first is None:
            return
        table, names = _insert_target(table, first)
        feed = _Feed(itertools.chain([first], chunks))
        sql = qualify(f"INSERT INTO analytics_dw.{table} ({names}) VALUES", self.database)
        from .ch_native import ArrowInsertClient, ArrowRows

        if self._stream_client is None:
            self._stream_client = ArrowInsertClient(**self._client_args)
        try:
            self._stream_client.execute(sql, [ArrowRows(feed, _driver_column)], columnar=True,
                                        settings=STREAM_INSERT_SETTINGS)
        except Exception as exc:
            if exc is feed.error:
                raise
            raise self._error(exc) from exc

    def close(self) -> None:
        self._client.disconnect()
        if self._stream_client is not None:
            self._stream_client.disconnect()


class _Feed:
    """An iterator that remembers the exception its source raised (to tell it from the
    driver's own errors)."""

    def __init__(self, source: Iterator[pa.Table]) -> None:
        self._source = source
        self.error: BaseException | None = None

    def __iter__(self) -> "_Feed":
        return self

    def __next__(self) -> pa.Table:
        try:
            return next(self._source)
        except StopIteration:
            raise
        except BaseException as exc:
            self.error = exc
            raise


def _driver_column(column: pa.ChunkedArray) -> list:
    """Arrow column -> the driver's generic Python values (epoch ints for DateTime): the
    fallback for column types `ch_native` has no vectorised encoder for."""
    if pa.types.is_timestamp(column.type):
        return column.cast(pa.timestamp("s", tz="UTC")).cast(pa.int64()).to_numpy().tolist()
    return column.to_pylist()


_chdb_sessions: dict[str, Any] = {}

# The embedded engine merges parts in background threads of the pipeline's own process. One
# merge at a time (defaults: a pool of 16, two merges per thread) keeps its memory flat as the
# table grows and leaves the two cores to the load: measured on 3M rows, peak RSS 567-609 MiB
# instead of 650-726, and the load no slower.
CHDB_ENGINE_ARGS = "background_pool_size=1&background_merges_mutations_concurrency_ratio=1"


class ChdbWarehouse:
    engine = "chdb"

    def __init__(self, target: WarehouseTarget) -> None:
        self.database = target.database
        self._path = str(Path(target.path).expanduser().resolve())
        _chdb_session(self._path)  # open (or share) the folder now, so errors surface here

    @property
    def _session(self) -> Any:
        # Looked up on every call: after release_chdb() (another process needed the folder)
        # the next statement transparently re-opens it.
        return _chdb_session(self._path)

    def _run(self, sql: str, params: dict[str, Any] | None, fmt: str = "CSV") -> Any:
        try:
            if params:
                return self._session.query(qualify(sql, self.database), fmt, params=params)
            return self._session.query(qualify(sql, self.database), fmt)
        except Exception as exc:
            raise WarehouseError(f"chDB at {self._path}: {_first_line(exc)}") from exc

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._run(sql, params)

    def _arrow(self, sql: str, params: dict[str, Any] | None) -> pa.Table:
        # chDB's own "ArrowTable" format imports pandas only to check that it is installed;
        # reading the Arrow file it returns is all it does after that.
        result = self._run(sql, params, fmt="Arrow")
        if result is None or len(result) == 0:
            return pa.table({})
        return pa.RecordBatchFileReader(result.get_memview().view()).read_all()

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        table = self._arrow(sql, params)
        if table.num_columns == 0:
            return []
        return [tuple(row.values()) for row in table.to_pylist()]

    def query_with_names(self, sql: str) -> tuple[list[str], list[tuple]]:
        table = self._arrow(sql, None)
        return list(table.column_names), [tuple(r.values()) for r in table.to_pylist()]

    def insert(self, table: str, rows: pa.Table) -> None:
        if rows.num_rows == 0:
            return
        table, names = _insert_target(table, rows)
        arrow_rows = rows  # read by name by chDB's Python() table function below
        # Arrow columns arrive as Nullable: without insert_null_as_default = 0 a NULL would
        # silently become 0 or '' in a non-Nullable column; refused instead, like the server.
        sql = qualify(
            f"INSERT INTO analytics_dw.{table} ({names}) SETTINGS insert_null_as_default = 0 "
            f"SELECT {names} FROM Python(arrow_rows)",
            self.database,
        )
        try:
            self._session.query(sql)
        except Exception as exc:
            raise WarehouseError(f"chDB at {self._path}: {_first_line(exc)}") from exc
        del arrow_rows

    def insert_stream(self, table: str, chunks: Iterable[pa.Table]) -> None:
        """One INSERT per chunk: chDB runs in this process, nothing to overlap with."""
        for chunk in chunks:
            self.insert(table, chunk)

    def close(self) -> None:
        """Sessions are shared per process (chDB allows one folder); see `release_chdb`."""


def _chdb_session(path: str) -> Any:
    from chdb import session

    if path not in _chdb_sessions:
        for other in list(_chdb_sessions):
            release_chdb(other)
        Path(path).mkdir(parents=True, exist_ok=True)
        _chdb_sessions[path] = session.Session(f"{path}?{CHDB_ENGINE_ARGS}")
    return _chdb_sessions[path]


def release_chdb(path: str | None = None) -> None:
    """Close this process's chDB session(s) so another process may open the folder."""
    for key in [path] if path else list(_chdb_sessions):
        sess = _chdb_sessions.pop(key, None)
        if sess is not None:
            sess.close()


def connect(target: WarehouseTarget) -> Warehouse:
    if target.kind == "chdb":
        return ChdbWarehouse(target)
    return ClickHouseServer(target)


CREATED_OBJECT = re.compile(r"CREATE (?:TABLE|VIEW) IF NOT EXISTS analytics_dw\.(\w+)")
EXISTING_OBJECTS_SQL = ("SELECT name, sorting_key FROM system.tables "
                        "WHERE database = {database:String}")


def ensure_schema(wh: Warehouse, ddl_path: Path) -> None:
    """Apply the (idempotent) warehouse DDL, so a fresh chDB folder or server just works, and
    move a fact_sales of the old layout to the current one (`migrate_fact_sales`).
    When every table and view it creates is there already, one query instead of twenty."""
    script = ddl_path.read_text()
    wanted = set(CREATED_OBJECT.findall(script))
    present = {name: key for name, key in wh.query(EXISTING_OBJECTS_SQL, {"database": wh.database})}
    if not wanted <= present.keys():  # CREATE ... IF NOT EXISTS: the same result either way
        apply_sql_file(wh, ddl_path)
    if present.get("fact_sales", FACT_SORTING_KEY) != FACT_SORTING_KEY:
        migrate_fact_sales(wh, script)


# fact_sales was first keyed by (transaction_date, transaction_id), partitioned by month: a
# transaction whose day changed kept its old row. It is keyed by transaction_id alone now.
FACT_SORTING_KEY = "transaction_id"
FACT_DDL = re.compile(r"CREATE TABLE IF NOT EXISTS analytics_dw\.fact_sales \(.*?;", re.S)
FACT_MIGRATION = "fact_sales_migrating"


def migrate_fact_sales(wh: Warehouse, script: str) -> None:
    """Copy the current, not deleted version of every transaction into a table of the current
    layout and swap it in. Of two live rows of one id (a transaction whose day moved, kept on
    both days by the old key) the higher version wins, as in the source. Deleted rows are not
    copied: a tombstone of an old-day row may carry a version above the id's live row."""
    log.warning("fact_sales has the old layout (keyed by day): moving it to the current one")
    create = FACT_DDL.search(script)
    if create is None:
        raise WarehouseError("the fact_sales definition is missing from the warehouse DDL")
    ddl = create.group(0).rstrip(";").replace(
        "analytics_dw.fact_sales (", f"analytics_dw.{FACT_MIGRATION} (", 1)
    wh.execute(f"DROP TABLE IF EXISTS analytics_dw.{FACT_MIGRATION}")
    wh.execute(ddl)
    wh.execute(f"INSERT INTO analytics_dw.{FACT_MIGRATION} SELECT * FROM "
               "(SELECT * FROM analytics_dw.fact_sales FINAL) WHERE _deleted = 0")
    wh.execute("RENAME TABLE analytics_dw.fact_sales TO analytics_dw.fact_sales_old_layout, "
               f"analytics_dw.{FACT_MIGRATION} TO analytics_dw.fact_sales")
    wh.execute("DROP TABLE analytics_dw.fact_sales_old_layout")


def format_table(names: list[str], rows: list[tuple]) -> str:
    """A plain aligned text table, like clickhouse-client's PrettyCompact without borders."""
    cells = [names] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(names))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + [f"({len(rows)} rows)"])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
