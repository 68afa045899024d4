"""A Warehouse that retries its statements and inserts while the server cannot be reached.

Every write of the pipelines is idempotent (the same keys and versions), and every read is a
read, so any of them may be sent again. After the last attempt the failure is a plain
WarehouseError, not a transient one: a larger step around it (a window's read) does not start
over for a warehouse that stays down. `insert_stream` is not retried: its chunks cannot be read
twice, so the pipeline retries the whole window instead.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, TypeVar

import pyarrow as pa

from ewallet_etl.retry import with_retries
from ewallet_etl.warehouse.base import Warehouse, WarehouseError, WarehouseUnavailable

T = TypeVar("T")


class RetryingWarehouse:
    def __init__(self, inner: Warehouse, attempts: int) -> None:
        self.inner = inner
        self.attempts = attempts
        self.database = inner.database
        self.engine = inner.engine
        self.paged_reads = inner.paged_reads

    def _retried(self, step: Callable[[], T], what: str) -> T:
        try:
            return with_retries(step, what, self.attempts)
        except WarehouseUnavailable as exc:
            raise WarehouseError(str(exc)) from exc

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._retried(lambda: self.inner.execute(sql, params), "a warehouse statement")

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        return self._retried(lambda: self.inner.query(sql, params), "a warehouse query")

    def query_with_names(self, sql: str) -> tuple[list[str], list[tuple]]:
        return self._retried(lambda: self.inner.query_with_names(sql), "a warehouse query")

    def insert(self, table: str, rows: pa.Table) -> None:
        self._retried(lambda: self.inner.insert(table, rows), f"insert into {table}")

    def insert_stream(self, table: str, chunks: Iterable[pa.Table]) -> None:
        self.inner.insert_stream(table, chunks)

    def close(self) -> None:
        self.inner.close()
