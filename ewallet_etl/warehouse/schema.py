"""The warehouse's schema: DDL-Clickhouse.sql applied when something is missing, and the move
of a warehouse of an older layout to the current one."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ewallet_etl.warehouse.base import Warehouse, WarehouseError, apply_sql_file

log = logging.getLogger(__name__)

# The warehouse DDL ships inside the package (the repository root links to it).
WAREHOUSE_DDL = Path(__file__).with_name("DDL-Clickhouse.sql")

CREATED_OBJECT = re.compile(r"CREATE (?:TABLE|VIEW) IF NOT EXISTS analytics_dw\.(\w+)")
STARTED_US_COLUMN_SQL = ("SELECT 1 FROM system.columns WHERE database = {database:String} "
                         "AND table = 'etl_runs' AND name = 'started_us'")
FACT_COLUMNS_SQL = ("SELECT name FROM system.columns WHERE database = {database:String} "
                    "AND table = 'fact_sales'")
EXISTING_OBJECTS_SQL = ("SELECT name, sorting_key FROM system.tables "
                        "WHERE database = {database:String}")


def missing_objects(wh: Warehouse, ddl_path: Path) -> list[str]:
    """The tables and views of the DDL this warehouse does not have (read-only)."""
    wanted = set(CREATED_OBJECT.findall(ddl_path.read_text()))
    present = {name for name, _ in wh.query(EXISTING_OBJECTS_SQL, {"database": wh.database})}
    return sorted(wanted - present)


def ensure_schema(wh: Warehouse, ddl_path: Path) -> None:
    """Apply the (idempotent) warehouse DDL, so a fresh chDB folder or server just works, and
    move a fact_sales of the old layout to the current one (`migrate_fact_sales`).
    When every table and view it creates is there already, one query instead of twenty."""
    script = ddl_path.read_text()
    wanted = set(CREATED_OBJECT.findall(script))
    present = {name: key for name, key in wh.query(EXISTING_OBJECTS_SQL, {"database": wh.database})}
    if not wanted <= present.keys():  # CREATE ... IF NOT EXISTS: the same result either way
        apply_sql_file(wh, ddl_path)
    if "etl_runs" in present and not wh.query(STARTED_US_COLUMN_SQL, {"database": wh.database}):
        # etl_runs from before runs carried their start in microseconds (two runs in a second)
        wh.execute("ALTER TABLE analytics_dw.etl_runs ADD COLUMN started_us UInt64 DEFAULT "
                   "toUInt64(toUnixTimestamp(started_at)) * 1000000")
    if "fact_sales" in present:
        _add_fact_columns(wh)
    if present.get("fact_sales", FACT_SORTING_KEY) != FACT_SORTING_KEY:
        migrate_fact_sales(wh, script)


def _add_fact_columns(wh: Warehouse) -> None:
    columns = {name for (name,) in wh.query(FACT_COLUMNS_SQL, {"database": wh.database})}
    if "source" not in columns:
        # fact_sales from before the MongoDB source: every fact it holds came from MySQL
        log.info("fact_sales: adding the column source (its rows came from mysql)")
        wh.execute("ALTER TABLE analytics_dw.fact_sales ADD COLUMN source String DEFAULT 'mysql'")
    if "_loaded_us" not in columns:
        # from before the batch stamped its rows: a full refresh checks every fact once
        wh.execute("ALTER TABLE analytics_dw.fact_sales ADD COLUMN _loaded_us UInt64 DEFAULT 0")


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


