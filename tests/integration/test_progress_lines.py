"""Long loads log their progress at the default level: the binlog's snapshot too. Both
engines."""

from __future__ import annotations

import logging

import pytest

from ewallet_etl.pipelines import progress
from ewallet_etl.pipelines.binlog import run_binlog

pytestmark = pytest.mark.integration


def test_the_binlog_snapshot_logs_progress(stream_settings, monkeypatch, caplog):
    monkeypatch.setattr(progress, "EVERY", 0.0)  # a line per chunk, however fast
    with caplog.at_level(logging.INFO, logger="ewallet_etl.progress"):
        report = run_binlog(stream_settings)
    lines = [r for r in caplog.records if r.name == "ewallet_etl.progress"
             and r.getMessage().startswith("binlog snapshot: ")]
    assert lines, [r.getMessage() for r in caplog.records]
    assert lines[-1].progress["rows"] == report.snapshot_rows
