"""The write-up's flat functions, kept as a small API over the package.

`etl_pipeline.py` re-exports them. `run_batch` (ewallet_etl.batch) is what the command runs:
it strings these steps together with retries, quarantine, fault points and the audit row.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Iterator

import pyarrow as pa

from . import source_mysql, transform, watermark
from .config import Settings
from .source_ids import with_found_flags
from .warehouse import Warehouse


def _settings(settings: Settings | None) -> Settings:
    return settings if settings is not None else Settings.from_env()


def get_last_watermark(settings: Settings | None = None) -> datetime | None:
    """The saved checkpoint (UTC), or None before the first load."""
    settings = _settings(settings)
    conn = source_mysql.connect(settings)
    try:
        return watermark.read_checkpoint(conn, settings.pipeline_name)
    finally:
        conn.close()


def extract_data(
    last_watermark: datetime | None, settings: Settings | None = None
) -> tuple[watermark.Window, Iterator[pa.Table]]:
    """The next window and its transactions, as Arrow chunks (dimensions: see run_batch)."""
    settings = _settings(settings)
    conn = source_mysql.connect(settings)
    try:
        window = watermark.next_window(
            last_watermark,
            source_mysql.db_clock(conn),
            source_mysql.oldest_open_transaction(conn),
            lag=timedelta(seconds=settings.lag_seconds),
            overlap=timedelta(seconds=settings.overlap_seconds),
        )
    finally:
        conn.close()
    return window, _transactions(settings, window)


def _transactions(settings: Settings, window: watermark.Window) -> Iterator[pa.Table]:
    params = {"low": window.low, "high": window.high}
    conn = source_mysql.connect(settings)  # asks whether each chunk's users/merchants exist
    try:
        chunks = source_mysql.stream(settings, source_mysql.TRANSACTIONS_SQL, params)
        yield from with_found_flags(chunks, conn)
    finally:
        conn.close()


def transform_data(batch: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Source transactions -> (fact_sales rows, rejects)."""
    return transform.transform_transactions(batch)


def load_data(warehouse: Warehouse, facts: pa.Table) -> None:
    """Upsert fact rows (ReplacingMergeTree: loading a row again replaces it)."""
    warehouse.insert("fact_sales", facts)


def update_watermark(value: datetime, settings: Settings | None = None) -> None:
    """Save the checkpoint; call only after the window's rows have landed."""
    settings = _settings(settings)
    conn = source_mysql.connect(settings)
    try:
        watermark.save_checkpoint(conn, settings.pipeline_name, value)
    finally:
        conn.close()
