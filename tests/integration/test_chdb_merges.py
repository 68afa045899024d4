"""chDB merges only while a process holds its folder: closing a warehouse lets the merges in
progress finish instead of cancelling them (a run that cancels a merge leaves it to every
following run, which cancels it again while parts pile up behind it)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ewallet_etl.warehouse import chdb as chdb_engine
from tests.helpers import open_warehouse, unique, warehouse_target

PARTS = 8
ROWS_PER_PART = 400_000


def _merges(wh, database: str) -> int:
    (count,), = wh.query("SELECT count() FROM system.merges WHERE database = {db:String}",
                         {"db": database})
    return int(count)


def _parts(wh, database: str) -> int:
    (count,), = wh.query("SELECT count() FROM system.parts WHERE database = {db:String} "
                         "AND table = 'wide' AND active", {"db": database})
    return int(count)


def test_closing_chdb_finishes_the_merges_in_progress(chdb_path: Path) -> None:
    database = unique("ewt_merge")
    wh = open_warehouse(warehouse_target("chdb", database, chdb_path))
    wh.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
    wh.execute(f"CREATE TABLE {database}.wide (k UInt64, s String) "
               f"ENGINE = MergeTree ORDER BY k")
    try:
        for part in range(PARTS):  # parts large enough that merging them takes a while
            wh.execute(f"INSERT INTO {database}.wide SELECT number * {PARTS} + {part}, "
                       f"repeat(toString(number), 8) FROM numbers({ROWS_PER_PART})")
        deadline = time.monotonic() + 20
        while _merges(wh, database) == 0:  # a merge of these parts is running
            assert time.monotonic() < deadline, "chDB never started merging the parts"
            time.sleep(0.01)
        before = _parts(wh, database)

        wh.close()

        assert _merges(wh, database) == 0  # nothing left running, so nothing cancelled
        assert _parts(wh, database) < before
        (rows,), = wh.query(f"SELECT count() FROM {database}.wide")
        assert int(rows) == PARTS * ROWS_PER_PART
    finally:
        wh.execute(f"DROP DATABASE IF EXISTS {database} SYNC")


def test_the_wait_for_merges_is_bounded(chdb_path: Path, caplog) -> None:
    database = unique("ewt_merge")
    wh = open_warehouse(warehouse_target("chdb", database, chdb_path))
    wh.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
    wh.execute(f"CREATE TABLE {database}.wide (k UInt64, s String) "
               f"ENGINE = MergeTree ORDER BY k")
    try:
        for part in range(PARTS):
            wh.execute(f"INSERT INTO {database}.wide SELECT number * {PARTS} + {part}, "
                       f"repeat(toString(number), 8) FROM numbers({ROWS_PER_PART})")
        deadline = time.monotonic() + 20
        while _merges(wh, database) == 0:
            assert time.monotonic() < deadline, "chDB never started merging the parts"
            time.sleep(0.01)
        caplog.set_level(logging.INFO, logger=chdb_engine.__name__)
        session = chdb_engine._chdb_session(str(Path(chdb_path).resolve()))
        started = time.monotonic()
        chdb_engine.finish_merges(session, wait_seconds=0.0)
        assert time.monotonic() - started < 0.5
        assert "left for a later run" in caplog.text
    finally:
        wh.execute(f"DROP DATABASE IF EXISTS {database} SYNC")
