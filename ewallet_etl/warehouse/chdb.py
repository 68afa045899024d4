"""The embedded engine: ClickHouse in this process (chDB 26.x) on a data folder.

Known limits (documented by chDB, checked here): one data folder per process at a time, and no
second process on the same folder while one has it open (`release_chdb` lets go of it).
Inserts go through `INSERT ... SELECT FROM Python(arrow_table)`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa

from ewallet_etl.config import WarehouseTarget
from ewallet_etl.core.errors import one_line
from ewallet_etl.warehouse.base import EngineNotInstalled, WarehouseError, insert_target, qualify
from ewallet_etl.warehouse.result_types import epoch_fixer, fix_rows

log = logging.getLogger(__name__)
_chdb_sessions: dict[str, Any] = {}

# The embedded engine merges parts in background threads of the pipeline's own process. One
# merge at a time (defaults: a pool of 16, two merges per thread) keeps its memory flat as the
# table grows and leaves the two cores to the load: measured on 3M rows, peak RSS 567-609 MiB
# instead of 650-726, and the load no slower.
CHDB_ENGINE_ARGS = "background_pool_size=1&background_merges_mutations_concurrency_ratio=1"

# chDB merges parts only while a process holds the folder, and closing the folder cancels the
# merges in progress. A run that ends mid-merge throws the merge away; the next run starts the
# same merge and throws it away again, and the parts written meanwhile pile up behind it
# (measured after a 10M-row load: every 20k-change run spent 0.4 CPU-s more on a merge it
# cancelled, and fact_sales gained a part per run). So closing a warehouse that inserted rows
# lets the merges running at that moment finish (not the ones they lead to), for at most this
# long. A read-only use (status, sql) writes no part and does not wait.
MERGE_WAIT_SECONDS = 60.0

# optimize_on_insert = 0: an insert does not first collapse the versions within its own block
# (FINAL and the merges do that anyway): measured on 100,000-row chunks of fact_sales, an
# insert needs 40 MiB instead of 60 and runs ~15% faster.
INSERT_SETTINGS = ("insert_null_as_default = 0, max_threads = 1, max_insert_threads = 1, "
                   "optimize_on_insert = 0")

# chDB's allocator (jemalloc) keeps the pages an insert frees for 5 s before it gives them back
# (its dirty_decay_ms, fixed when chDB is built: MALLOC_CONF is not read), in each of its
# per-CPU arenas: ~50 MiB an arena, ~100 more at the peak of a 10M-row load than its no-op
# run. Handing them back (SYSTEM JEMALLOC PURGE) whenever this many bytes have been inserted
# since the last time caps that. Measured on a 10M-row load read in pages: peak RSS 552 ->
# 504-513 MiB, no slower; after every 100,000-row insert: 497 MiB but 10% slower.
PURGE_EVERY_BYTES = 24 << 20


class FreedPages:
    """Counts the bytes inserted through a chDB session and hands the engine's freed pages
    back to the system every PURGE_EVERY_BYTES (see there)."""

    def __init__(self) -> None:
        self._since = 0
        self._supported = True

    def inserted(self, session: Any, nbytes: int) -> None:
        self._since += nbytes
        if self._since < PURGE_EVERY_BYTES or not self._supported:
            return
        self._since = 0
        try:
            session.query("SYSTEM JEMALLOC PURGE")
        except Exception as exc:  # a build without jemalloc: nothing to hand back
            self._supported = False
            log.debug("chDB cannot purge its allocator (%s)", one_line(exc))


class ChdbWarehouse:
    engine = "chdb"
    # An insert into chDB runs in this process on the cores the reader needs: the rows arrive
    # at ~1.7M/s and are taken at ~0.8M/s, and unpaged a 10M-row load queued up to ~250 MiB.
    paged_reads = True

    def __init__(self, target: WarehouseTarget) -> None:
        self.database = target.database
        self._path = str(Path(target.path).expanduser().resolve())
        self._inserted = False  # whether closing waits for merges (see MERGE_WAIT_SECONDS)
        self._freed_pages = FreedPages()
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
            raise WarehouseError(f"chDB at {self._path}: {one_line(exc)}") from exc

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
        rows = [tuple(r.values()) for r in table.to_pylist()]
        return list(table.column_names), fix_rows(rows, self._epoch_fixers(sql, table))

    def _epoch_fixers(self, sql: str, table: pa.Table) -> list[Any]:
        """A DateTime arrives as a UInt32 (its epoch seconds): the statement's column types
        (DESCRIBE, which runs nothing) tell which UInt32 is a time."""
        if not any(pa.types.is_uint32(f.type) for f in table.schema):
            return []
        try:
            described = self.query(f"DESCRIBE ({sql})")
        except WarehouseError:  # not a query (SHOW, a DDL): nothing to describe
            return []
        (zone,), = self.query("SELECT timezone()")
        return [epoch_fixer(row[1], zone) if pa.types.is_uint32(f.type) else None
                for f, row in zip(table.schema, described, strict=True)]

    def insert(self, table: str, rows: pa.Table) -> None:
        if rows.num_rows == 0:
            return
        table, names = insert_target(table, rows)
        arrow_rows = rows  # read by name by chDB's Python() table function below
        # Arrow columns arrive as Nullable: without insert_null_as_default = 0 a NULL would
        # silently become 0 or '' in a non-Nullable column; refused instead, like the server.
        # One thread per insert (INSERT_SETTINGS): a second one gains nothing while the reader
        # and the transform hold both cores, and keeps buffers of its own (measured apart:
        # 408 -> 375 MiB after thirty 100,000-row inserts into fact_sales).
        sql = qualify(
            f"INSERT INTO analytics_dw.{table} ({names}) SETTINGS {INSERT_SETTINGS} "
            f"SELECT {names} FROM Python(arrow_rows)",
            self.database,
        )
        self._inserted = True
        try:
            self._session.query(sql)
        except Exception as exc:
            raise WarehouseError(f"chDB at {self._path}: {one_line(exc)}") from exc
        del arrow_rows
        self._freed_pages.inserted(self._session, rows.nbytes)

    def insert_stream(self, table: str, chunks: Iterable[pa.Table]) -> None:
        """One INSERT per chunk: chDB runs in this process, nothing to overlap with."""
        for chunk in chunks:
            self.insert(table, chunk)

    def close(self) -> None:
        """After inserts, let the merges in progress finish (MERGE_WAIT_SECONDS). The session
        stays open: sessions are shared per process (chDB allows one folder); see
        `release_chdb`."""
        if self._inserted and self._path in _chdb_sessions:
            finish_merges(_chdb_sessions[self._path], MERGE_WAIT_SECONDS)


MERGES_SQL = "SELECT database, table, result_part_name FROM system.merges FORMAT TSV"


def finish_merges(session: Any, wait_seconds: float) -> None:
    """Wait until the merges running now are done, or `wait_seconds` have passed. Never
    raises: it runs as a warehouse closes, often after the run has failed, whose error it must
    not replace (a merge it could not wait for is only cancelled)."""
    deadline = time.monotonic() + wait_seconds
    try:
        merges = set(str(session.query(MERGES_SQL)).splitlines())
        while merges and time.monotonic() < deadline:
            time.sleep(0.05)
            merges &= set(str(session.query(MERGES_SQL)).splitlines())
    except Exception as exc:
        log.debug("cannot list chDB's merges (%s): not waiting for them", one_line(exc))
        return
    if merges:
        log.info("chDB merges still running after %.0f s are left for a later run: %s",
                 wait_seconds, sorted(merges))


def _chdb_session(path: str) -> Any:
    try:
        from chdb import session
    except ModuleNotFoundError as exc:  # the optional extra of a server-only install
        raise EngineNotInstalled("chDB is not installed: pip install 'ewallet-etl[chdb]', or point "
                             "CLICKHOUSE_URL at a ClickHouse server (clickhouse://...)") from exc

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


