"""`cdc replay` of a file with no change event in it (empty, or junk): exit 2 and one line, and
the state does not move: no hand-off, no replay save (nothing was applied). Both engines."""

from __future__ import annotations

import logging

import pytest

from ewallet_etl.cdc_cli import kind_parser, run_command
from ewallet_etl.pipelines.batch import run_batch

pytestmark = pytest.mark.integration

STATES_SQL = ("SELECT pipeline, kind FROM analytics_dw.etl_state "
              "WHERE pipeline = 'cdc_events' ORDER BY pipeline, kind")
RUNS_SQL = ("SELECT status, error FROM analytics_dw.etl_runs WHERE pipeline = 'cdc_events'")


@pytest.mark.parametrize("content, says", [
    ("", "holds no change event: it is empty"),
    ("  \n\n", "holds no change event: it is empty"),
    ('{"hello": "world"}\nnot json at all\n[1, 2]\n', "holds no change event: 3 record(s)"),
])
def test_a_file_without_change_events_is_refused_in_one_line(settings, wh, tmp_path, caplog,
                                                            content, says):
    run_batch(settings)  # a batch fed the star schema: a replay would hand over from it
    events = tmp_path / "events.json"
    events.write_text(content)
    args = kind_parser("replay", "ewallet-etl cdc replay").parse_args([str(events)])
    with caplog.at_level(logging.INFO):
        assert run_command(settings, args) == 2
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) == 1 and says in loud[0], loud
    assert wh.query(STATES_SQL) == []  # no hand-off, no replay save
    (status, error), = wh.query(RUNS_SQL)
    assert status == "failed" and "no change event" in error


def test_an_empty_stdin_is_nothing_to_do(settings, wh, monkeypatch):
    import io
    import sys

    run_batch(settings)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    args = kind_parser("replay", "ewallet-etl cdc replay").parse_args(["-"])
    assert run_command(settings, args) == 0  # a producer with nothing to send
    assert wh.query(STATES_SQL) == []  # and still nothing handed over or saved
