"""The warehouse seam: one small Protocol (`base.Warehouse`), two engines, and nothing else in
the package knows there are two.

* `server.ClickHouseServer`: a ClickHouse server over the native protocol (`native.py` encodes
  Arrow tables into Native blocks).
* `chdb.ChdbWarehouse`: ClickHouse in-process (chDB) on a data folder.

One SQL dialect for both: statements name the database `analytics_dw` and bind values as
`{name:Type}` parameters. No value is ever formatted into SQL text by this project.
`open_warehouse` is the one way in for the pipelines: connect (with retries), apply the schema.
"""

from __future__ import annotations

from pathlib import Path

from ewallet_etl.config import Settings, WarehouseTarget
from ewallet_etl.core.errors import first_line
from ewallet_etl.retry import with_retries
from ewallet_etl.warehouse.base import (
    IN_TEXT_SET,
    WRITABLE_TABLES,
    Warehouse,
    WarehouseError,
    WarehouseUnavailable,
    format_table,
    qualify,
    split_statements,
    text_set,
)
from ewallet_etl.warehouse.retrying import RetryingWarehouse
from ewallet_etl.warehouse.schema import (
    FACT_SORTING_KEY,
    WAREHOUSE_DDL,
    ensure_schema,
    migrate_fact_sales,
    missing_objects,
)

__all__ = [
    "FACT_SORTING_KEY", "IN_TEXT_SET", "WAREHOUSE_DDL", "WRITABLE_TABLES", "Warehouse",
    "WarehouseError", "WarehouseUnavailable", "connect", "ensure_schema", "format_table",
    "migrate_fact_sales", "missing_objects", "open_warehouse", "qualify", "release_chdb",
    "split_statements", "text_set",
]


def connect(target: WarehouseTarget) -> Warehouse:
    if target.kind == "chdb":
        from ewallet_etl.warehouse.chdb import ChdbWarehouse

        return ChdbWarehouse(target)
    from ewallet_etl.warehouse.server import ClickHouseServer

    return ClickHouseServer(target)


def release_chdb(path: str | None = None) -> None:
    """Let go of this process's chDB folder(s), so another process may open them."""
    from ewallet_etl.warehouse import chdb

    chdb.release_chdb(path)


def open_warehouse(settings: Settings, schema: bool = True) -> Warehouse:
    """Connect to the configured warehouse (retried) and make sure its schema is there; the
    warehouse returned retries its own statements and inserts (`retrying.py`).
    `schema=False` opens it as it is, for reading (status, sql): nothing is created or
    migrated, and a chDB folder that does not exist is an error, not a new warehouse."""
    target = settings.warehouse
    if not schema and target.kind == "chdb" and not Path(target.path).expanduser().is_dir():
        raise WarehouseError(f"{target.describe()}: no such folder (nothing has run into it)")

    def attempt() -> Warehouse:
        try:
            wh = connect(target)
        except WarehouseError:
            raise
        except Exception as exc:  # chDB refuses a folder another process has open, vaguely
            hint = " (is another process using the folder?)" if target.kind == "chdb" else ""
            raise WarehouseError(f"{target.describe()}: {first_line(exc)}{hint}") from exc
        if schema:
            ensure_schema(wh, WAREHOUSE_DDL)
        return RetryingWarehouse(wh, settings.max_retries)

    return with_retries(attempt, f"connect to {target.describe()}", settings.max_retries)
