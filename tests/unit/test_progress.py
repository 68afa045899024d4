"""Progress on a long load: a bar drawn in place on a terminal, plain lines in a log, and
machine-readable fields in --log-format json."""

from __future__ import annotations

import io
import json
import logging

import pytest

from ewallet_etl.cli import JsonFormatter, TerminalProgress
from ewallet_etl.pipelines import progress as progress_module
from ewallet_etl.pipelines.progress import Progress


def records(caplog: pytest.LogCaptureFixture, total: int | None) -> list[logging.LogRecord]:
    progress = Progress("rows read", every=0.0, total=total)
    with caplog.at_level(logging.INFO, logger="ewallet_etl.progress"):
        progress.add(2_500)
        progress.add(2_500)
    return caplog.records


def test_a_terminal_gets_a_bar_redrawn_in_place(caplog):
    out = io.StringIO()
    handler = TerminalProgress(out)
    for record in records(caplog, total=10_000):
        handler.emit(record)
    drawn = out.getvalue().split("\r\x1b[K")[1:]
    assert len(drawn) == 2 and "\n" not in out.getvalue()
    assert drawn[1].startswith("rows read [##########----------]  50% 5,000/10,000 rows")
    assert "rows/s" in drawn[1]


def test_without_a_total_the_bar_shows_activity(caplog):
    out = io.StringIO()
    handler = TerminalProgress(out)
    for record in records(caplog, total=None):
        handler.emit(record)
    last = out.getvalue().split("\r\x1b[K")[-1]
    assert last.startswith("rows read [") and "5,000 rows" in last and "%" not in last


def test_a_log_gets_plain_lines_and_json_gets_fields(caplog):
    logged = records(caplog, total=10_000)
    assert logged[1].getMessage().startswith("rows read: 5000 rows, ")
    entry = json.loads(JsonFormatter().format(logged[1]))
    assert entry["progress"]["rows"] == 5000 and entry["progress"]["total"] == 10_000
    assert set(entry["progress"]) == {"what", "rows", "total", "rows_per_second",
                                      "elapsed_seconds"}


def test_the_interval_is_one_module_setting(monkeypatch, caplog):
    monkeypatch.setattr(progress_module, "EVERY", 0.0)
    with caplog.at_level(logging.INFO, logger="ewallet_etl.progress"):
        Progress("x").add(1)
    assert len(caplog.records) == 1
