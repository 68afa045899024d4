"""The write-up's flat functions, kept as a small API over the package.

`etl_pipeline.py` re-exports them. `run_batch` (pipelines/batch.py) is what the command
runs: it strings these steps together with retries, quarantine, fault points and the audit row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator

import pyarrow as pa

from ewallet_etl.config import Settings
from ewallet_etl.core import transform
from ewallet_etl.core.window import Window
from ewallet_etl.pipelines.batch import plan_window
from ewallet_etl.sources import mysql as source_mysql
from ewallet_etl.sources.mysql_ids import with_found_flags
from ewallet_etl.state.checkpoint import read_checkpoint, save_checkpoint
from ewallet_etl.warehouse import Warehouse


def _settings(settings: Settings | None) -> Settings:
    return settings if settings is not None else Settings.from_env()


def get_last_watermark(settings: Settings | None = None) -> datetime | None:
    """The saved checkpoint (UTC), or None before the first load."""
    settings = _settings(settings)
    conn = source_mysql.connect(settings)
    try:
        return read_checkpoint(conn, settings.pipeline_name)
    finally:
        conn.close()


def extract_data(
    last_watermark: datetime | None, settings: Settings | None = None
) -> tuple[Window, Iterator[pa.Table]]:
    """The next window and its transactions, as Arrow chunks (dimensions: see run_batch)."""
    settings = _settings(settings)
    conn = source_mysql.connect(settings)
    try:
        window = plan_window(settings, last_watermark, *source_mysql.window_bounds(conn))
    finally:
        conn.close()
    return window, _transactions(settings, window)


def _transactions(settings: Settings, window: Window) -> Iterator[pa.Table]:
    params = {"low": window.low, "high": window.high}
    conn = source_mysql.connect(settings)  # asks whether each chunk's users/merchants exist
    try:
        chunks = source_mysql.stream(settings, source_mysql.TRANSACTIONS_SQL, params, None)
        yield from with_found_flags(chunks, conn)
    finally:
        conn.close()


def transform_data(batch: Any) -> tuple[Any, Any]:
    """Source transactions -> (fact_sales rows, rejects), as Arrow tables; or, as the write-up
    describes it, pandas DataFrames in and out (converted here, at the edge: the pipeline itself
    stays on Arrow). Amounts must be exact (decimal.Decimal or text), never floats."""
    if not _is_dataframe(batch):
        return transform.transform_transactions(batch)
    table = pa.Table.from_pandas(batch, preserve_index=False)
    facts, rejects = transform.transform_transactions(_exact_amounts(table))
    return facts.to_pandas(), rejects.to_pandas()


def _is_dataframe(value: Any) -> bool:
    # Without importing pandas: the pipeline never needs it.
    return any(cls.__module__.startswith("pandas") and cls.__name__ == "DataFrame"
               for cls in type(value).__mro__)


def _exact_amounts(table: pa.Table) -> pa.Table:
    """The amount column as a decimal: text is parsed exactly; a float is refused."""
    amount = table.column("amount")
    if pa.types.is_floating(amount.type):
        raise TypeError("amount is a float column: pass decimal.Decimal or text, money is exact")
    if pa.types.is_string(amount.type) or pa.types.is_large_string(amount.type):
        index = table.schema.get_field_index("amount")
        table = table.set_column(index, "amount", amount.cast(pa.decimal128(38, 10)))
    return table


def load_data(warehouse: Warehouse, facts: pa.Table) -> None:
    """Upsert fact rows (ReplacingMergeTree: loading a row again replaces it)."""
    warehouse.insert("fact_sales", facts)


def update_watermark(value: datetime, settings: Settings | None = None) -> None:
    """Save the checkpoint; call only after the window's rows have landed."""
    settings = _settings(settings)
    conn = source_mysql.connect(settings)
    try:
        save_checkpoint(conn, settings.pipeline_name, value)
    finally:
        conn.close()
