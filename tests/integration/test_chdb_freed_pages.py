"""chDB's allocator keeps the pages an insert frees for 5 s; the warehouse hands them back to
the system every `PURGE_EVERY_BYTES` inserted (`chdb.FreedPages`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ewallet_etl.warehouse import WAREHOUSE_DDL, ensure_schema
from ewallet_etl.warehouse import chdb as chdb_engine
from tests.helpers import open_warehouse, unique, warehouse_target

DIRTY = re.compile(r"Merged arenas stats:.*?\n\s*dirty:\s+\S+\s+(\d+)", re.S)


def _dirty_pages(session: Any) -> int:
    """jemalloc's freed pages not yet given back, over all its arenas."""
    text = str(session.query("SELECT * FROM system.jemalloc_stats", "TSV")).replace("\\n", "\n")
    match = DIRTY.search(text)
    assert match, "chDB's jemalloc statistics changed their layout"
    return int(match.group(1))


class _Session:
    def __init__(self, fails: bool = False) -> None:
        self.statements: list[str] = []
        self.fails = fails

    def query(self, sql: str) -> None:
        self.statements.append(sql)
        if self.fails:
            raise RuntimeError("Code: 1. DB::Exception: jemalloc is not used")


def test_pages_are_handed_back_every_so_many_bytes() -> None:
    session, freed = _Session(), chdb_engine.FreedPages()
    step = chdb_engine.PURGE_EVERY_BYTES // 3
    for _ in range(7):  # 7 thirds: handed back after the 3rd and the 6th
        freed.inserted(session, step + 1)
    assert session.statements == ["SYSTEM JEMALLOC PURGE"] * 2


def test_an_engine_without_jemalloc_is_asked_once() -> None:
    session, freed = _Session(fails=True), chdb_engine.FreedPages()
    for _ in range(3):
        freed.inserted(session, chdb_engine.PURGE_EVERY_BYTES)
    assert session.statements == ["SYSTEM JEMALLOC PURGE"]


@pytest.mark.parametrize("every", [1 << 40, 1])
def test_an_insert_past_the_threshold_leaves_no_freed_pages_held(chdb_path: Path, monkeypatch,
                                                                every: int) -> None:
    monkeypatch.setattr(chdb_engine, "PURGE_EVERY_BYTES", every)
    database = unique("ewt_freed")
    wh = open_warehouse(warehouse_target("chdb", database, chdb_path))
    ensure_schema(wh, WAREHOUSE_DDL)
    session = chdb_engine._chdb_session(str(chdb_path.resolve()))
    try:
        session.query("SYSTEM STOP MERGES")  # no merge frees pages between insert and check
        n = 200_000
        wh.insert("fact_sales", pa.table({
            "transaction_id": pa.array([f"T{i:09d}" for i in range(n)]),
            "user_key": pa.array([1] * n, pa.uint64()),
            "merchant_key": pa.array([1] * n, pa.uint64()),
            "amount": pa.array([i % 100_000 for i in range(n)], pa.decimal128(18, 2)),
            "amount_category": pa.array(["LOW"] * n),
            "status": pa.array(["SUCCESS"] * n),
            "_version": pa.array([1] * n, pa.uint64()),
        }))
        dirty = _dirty_pages(session)
        if every == 1:
            assert dirty < 256  # < 1 MiB: what background threads freed since
        else:
            assert dirty > 2_560  # > 10 MiB: the contrast the test needs
    finally:
        session.query("SYSTEM START MERGES")
        wh.execute("DROP DATABASE IF EXISTS analytics_dw SYNC")
