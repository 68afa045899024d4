"""The one state model (state/store.py) on both engines: every pipeline's kind and cursor in
etl_state, hand-offs recorded, a reset that forgets binlog positions, and warehouses written
before etl_state existed (etl_watermarks, cdc_state) still read."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pytest

from ewallet_etl.core.binlog_position import Position
from ewallet_etl.state import store
from ewallet_etl.state.checkpoint import read_landed, save_landed
from ewallet_etl.state.lineage import reset_replicas
from ewallet_etl.state.positions import read_position, save_position

pytestmark = pytest.mark.integration

AT = datetime(2025, 1, 12, 10, 0, 0, 123456, tzinfo=timezone.utc)


def test_each_pipeline_has_one_state_of_its_kind(wh):
    assert store.latest(wh) == {}
    save_landed(wh, "elt", "shop", AT, "run1")
    v = save_position(wh, "s1", Position.of("binlog.000007", 420), 5, 0, "db:3306/shop", "run2")
    save_position(wh, "s1", Position.of("binlog.000007", 900), 5, v, "db:3306/shop", "run3")
    states = store.latest(wh)
    assert {p: (s.kind, s.cursor) for p, s in states.items()} == {
        "elt": ("batch", {"watermark_us": 1_736_676_000_123_456}),
        "binlog:s1": ("binlog", {"file": "binlog.000007", "pos": 900, "server_id": 5})}
    assert read_position(wh, "s1").position == Position.of("binlog.000007", 900)
    wh.insert("fact_sales", _one_fact())  # read_landed wants facts present
    assert read_landed(wh, "elt", "shop") == AT
    assert read_landed(wh, "elt", "other_db") is None  # a mark is per source database


def test_a_hand_off_is_recorded_once_with_both_cursors(wh):
    save_landed(wh, "elt", "shop", AT, "run1")
    assert store.note_handoff(wh, "elt", "batch", "run1") is None  # nobody else fed it
    handed = store.note_handoff(wh, "binlog:s1", "binlog", "run2")
    assert handed is not None and handed.pipeline == "elt"
    save_position(wh, "s1", Position.of("binlog.000002", 77), 1, 0, "", "run2")
    assert store.note_handoff(wh, "binlog:s1", "binlog", "run3") is None  # still its turn
    (record,) = store.handoffs(wh)
    assert record["to"] == {"pipeline": "binlog:s1", "kind": "binlog", "cursor": None}
    assert record["from"] == {"pipeline": "elt", "kind": "batch",
                              "cursor": {"watermark_us": 1_736_676_000_123_456}}


def test_a_reset_forgets_binlog_positions_but_not_the_batch(wh):
    save_landed(wh, "elt", "shop", AT, "run1")
    save_position(wh, "s1", Position.of("binlog.000002", 77), 1)
    reset_replicas(wh)
    saved = read_position(wh, "s1")
    assert saved is not None and saved.position is None  # the next run takes a snapshot
    assert store.latest(wh)["elt"].cursor == {"watermark_us": 1_736_676_000_123_456}


def test_state_saved_before_etl_state_existed_is_still_read(wh):
    wh.insert("fact_sales", _one_fact())
    now = pa.array([AT], pa.timestamp("s", tz="UTC"))
    wh.insert("etl_watermarks", pa.table({  # as the batch wrote it before etl_state
        "pipeline": ["elt"], "source": ["shop"],
        "watermark_us": pa.array([1_736_676_000_123_456], pa.uint64()), "saved_at": now,
        "run_id": ["old"]}))
    wh.insert("cdc_state", pa.table({  # as the binlog CDC wrote it before etl_state
        "stream": ["s1"], "log_file": ["binlog.000003"], "log_pos": pa.array([555], pa.uint64()),
        "server_id": pa.array([9], pa.uint32()), "saved_at": now,
        "_version": pa.array([12], pa.uint64())}))
    assert read_landed(wh, "elt", "shop") == AT
    saved = read_position(wh, "s1")
    assert (saved.position, saved.version) == (Position.of("binlog.000003", 555), 12)


def _one_fact() -> pa.Table:
    return pa.table({
        "transaction_id": ["T1"], "user_key": pa.array([1], pa.uint64()),
        "merchant_key": pa.array([2], pa.uint64()),
        "amount": pa.array([pa.scalar(1, pa.decimal128(18, 2)).as_py()], pa.decimal128(18, 2)),
        "amount_category": ["Low"], "status": ["SUCCESS"],
        "transaction_time": pa.array([AT], pa.timestamp("s", tz="UTC")),
        "transaction_date": pa.array([AT.date()], pa.date32()),
        "updated_at": pa.array([AT], pa.timestamp("s", tz="UTC")),
        "_version": pa.array([1], pa.uint64()), "_deleted": pa.array([0], pa.uint8()),
    })


def test_an_etl_runs_table_from_before_gets_the_run_order_column(wh):
    from ewallet_etl.audit import RunRecord, record_run
    from ewallet_etl.warehouse import WAREHOUSE_DDL, ensure_schema

    wh.execute("DROP TABLE analytics_dw.etl_runs")
    wh.execute("CREATE TABLE analytics_dw.etl_runs (run_id String, pipeline String, mode String, "
               "started_at DateTime('UTC'), finished_at DateTime('UTC'), window_from String, "
               "window_to String, rows_read UInt64, rows_loaded UInt64, rows_rejected UInt64, "
               "status String, error String, seconds Float64) ENGINE = MergeTree() "
               "ORDER BY (pipeline, started_at, run_id)")
    ensure_schema(wh, WAREHOUSE_DDL)
    for n, run_id in enumerate(("first", "second")):  # two runs in the same second
        record_run(wh, RunRecord(run_id, "p", "full", AT.replace(microsecond=n), "", "", 0, 0, 0,
                                 "success", "", 0.0))
    assert wh.query("SELECT run_id FROM analytics_dw.etl_runs ORDER BY started_us DESC") == [
        ("second",), ("first",)]
