"""The ClickHouse server engine: the native protocol through clickhouse-driver, with Arrow
inserts encoded by `native.py`. Tested against 18.16 (Debian's package) and meant for current
servers too. 18.16 has no server-side parameters: `{name:Type}` becomes `%(name)s`, which the
driver escapes itself."""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import pyarrow as pa

from ewallet_etl.config import WarehouseTarget
from ewallet_etl.core.errors import one_line
from ewallet_etl.warehouse.base import (
    PARAM,
    WarehouseError,
    WarehouseUnavailable,
    insert_target,
    qualify,
)
from ewallet_etl.warehouse.result_types import decimal_fixer, fix_rows

if TYPE_CHECKING:
    from ewallet_etl.warehouse.native import ArrowInsertClient

log = logging.getLogger(__name__)

# A streamed INSERT is squashed by the server into parts of 256 MiB (of its in-memory columns;
# about 2.4M fact rows), with no bound on rows: the fewer the parts, the less the server merges
# while the load runs. Measured at 10M rows: parts of 1,048,576 rows (the server's default)
# cost the server 6.4 CPU-s and the load 10.9 s, 256 MiB parts 4.1-4.4 CPU-s and 9.8-10.1 s
# (262,144-row parts: 9.5 CPU-s). No difference at 1M rows. The price is server memory: an
# insert holds up to one part's 256 MiB until it is written (the server's own default byte
# bound, which its INSERT ... SELECT keeps too). Both set here, so that a server configured
# otherwise does not change it.
STREAM_INSERT_SETTINGS = {"min_insert_block_size_rows": 0,
                          "min_insert_block_size_bytes": 256 * 1024 * 1024}


class ClickHouseServer:
    engine = "clickhouse-server"
    # Unpaged, a 10M-row load into the server stays ~80 MiB over its no-op run; in pages it
    # grew, and MariaDB spent ~0.8 CPU-s more than on one scan (bench/README.md).
    paged_reads = False

    def __init__(self, target: WarehouseTarget) -> None:
        self.database = target.database
        self._where = target.describe()
        self._client_args = dict(
            host=target.host,
            port=target.port,
            user=target.user,
            password=target.password,
            secure=target.secure,  # TLS: clickhouse+tls:// or ?secure=true
            connect_timeout=5,
            send_receive_timeout=300,
            settings={"strings_as_bytes": False},
        )
        from ewallet_etl.warehouse.native import ArrowInsertClient

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
            return WarehouseUnavailable(f"ClickHouse at {self._where}: {one_line(exc)}")
        # driver errors carry no password; name the target instead. The server's reason is on
        # the lines after `Code: N.`: all of it, on one line.
        return WarehouseError(f"ClickHouse at {self._where}: {one_line(exc)}")

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._run(sql, params)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        return self._run(sql, params)

    def query_with_names(self, sql: str) -> tuple[list[str], list[tuple]]:
        rows, types = self._run(sql, None, with_column_types=True)
        return [name for name, _ in types], fix_rows(rows, [decimal_fixer(t) for _, t in types])

    def insert(self, table: str, rows: pa.Table) -> None:
        if rows.num_rows == 0:
            return
        table, names = insert_target(table, rows)
        # Encoded straight from the Arrow buffers by the server's column types (int64 cents for
        # Decimal(18, 2), no Python object per value); see ch_native.
        from ewallet_etl.warehouse.native import ArrowRows

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
        table, names = insert_target(table, first)
        feed = _Feed(itertools.chain([first], chunks))
        sql = qualify(f"INSERT INTO analytics_dw.{table} ({names}) VALUES", self.database)
        from ewallet_etl.warehouse.native import ArrowInsertClient, ArrowRows

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


