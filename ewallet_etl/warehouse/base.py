"""The warehouse seam: what every engine offers (`Warehouse`), and the rules they share.

A `Warehouse` owns one connection to one warehouse database: it runs SQL written for
`analytics_dw` (swapped for the configured database by `qualify`) with values bound as
ClickHouse parameters `{name:Type}`, reads rows back, and inserts Arrow tables into the tables
the pipelines write (WRITABLE_TABLES; anything else is refused). It raises WarehouseError
(WarehouseUnavailable when the server could not be reached: worth a retry), whose message names
the engine and never carries a secret. Which engine it is, is nobody else's business.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Iterable, Protocol

import pyarrow as pa

from ewallet_etl.config import IDENTIFIER
from ewallet_etl.retry import TransientError

log = logging.getLogger(__name__)

WAREHOUSE_DB_TOKEN = re.compile(r"\banalytics_dw\b")
PARAM = re.compile(r"\{(\w+):[^}]+\}")
# Tables the pipeline writes; inserts into anything else are refused.
WRITABLE_TABLES = frozenset(
    {"dim_users", "dim_merchants", "fact_sales", "cdc_transactions", "etl_quarantine", "etl_runs"}
    | {"etl_watermarks", "etl_run_starts", "etl_state", "mongo_keys"}
    | {"cdc_users", "cdc_merchants", "cdc_state"}  # binlog CDC (ewallet_etl/binlog_*.py)
    | {"cdc_lineage"}  # which version scheme feeds a replica (ewallet_etl/cdc_lineage.py)
)


class WarehouseError(RuntimeError):
    """The warehouse failed; the message names the engine and never carries a secret."""


class EngineNotInstalled(WarehouseError):
    """The engine the URL names is an optional extra that is not installed: a configuration
    problem (exit code 2), not a failed run."""

    exit_code = 2


class WarehouseUnavailable(WarehouseError, TransientError):
    """The ClickHouse server could not be reached or dropped the connection."""


class Warehouse(Protocol):
    database: str
    engine: str
    # Whether a whole-table read should run in pages (`sources.mysql.stream`): true where the
    # engine takes rows more slowly than connectorx reads them, since connectorx queues what it
    # has read ahead without bound.
    paged_reads: bool

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


def insert_target(table: str, rows: pa.Table) -> tuple[str, str]:
    """(table, column list) for an INSERT, both checked against the allow-list / identifier rule."""
    if table not in WRITABLE_TABLES:
        raise ValueError(f"refusing to insert into unknown table {table!r}")
    bad = [name for name in rows.column_names if not IDENTIFIER.match(name)]
    if bad:
        raise ValueError(f"invalid column names {bad!r}")
    return table, ", ".join(rows.column_names)


# Many text values as one String parameter, matched with IN_TEXT_SET.format(column=...): a list
# parameter is bound differently by clickhouse-driver on 18.16 and by chDB, one String alike.
# Hex, so no value can contain the separator.
IN_TEXT_SET = "has(splitByChar(',', {{values:String}}), hex({column}))"


def text_set(values: Iterable[str]) -> dict[str, str]:
    """The parameters of IN_TEXT_SET for these values."""
    return {"values": ",".join(v.encode("utf-8", "surrogateescape").hex().upper()
                               for v in values)}


def format_table(names: list[str], rows: list[tuple]) -> str:
    """A plain aligned text table, like clickhouse-client's PrettyCompact without borders."""
    cells = [names] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(names))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + [f"({len(rows)} rows)"])
