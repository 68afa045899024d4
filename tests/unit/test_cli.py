"""The command line's own refusals: one line and exit code 2, before anything connects."""

from __future__ import annotations

import logging

from ewallet_etl.cli import sql_main
from ewallet_etl.command import main


def test_a_missing_sql_file_is_one_line_and_exit_2(tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        assert sql_main(["-f", str(tmp_path / "missing.sql")]) == 2
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot read {tmp_path / 'missing.sql'}: No such file or directory"]


def test_the_command_has_a_version_and_refuses_unknown_commands(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("ewallet-etl ")
    assert main(["cdc", "sideways"]) == 2
    assert "unknown kind 'sideways'" in capsys.readouterr().err
    assert main([]) == 2


def test_json_log_lines_parse_and_keep_the_message():
    import json

    from ewallet_etl.cli import JsonFormatter

    record = logging.LogRecord("ewallet_etl.batch", logging.WARNING, __file__, 1,
                               "quarantined %d rows: %s", (2, {"amount is negative": 2}), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "WARNING" and entry["logger"] == "ewallet_etl.batch"
    assert entry["message"] == "quarantined 2 rows: {'amount is negative': 2}"
    assert entry["time"].endswith("+00:00")


def test_query_results_render_as_csv_and_json_exactly():
    import json
    from datetime import date
    from decimal import Decimal

    from ewallet_etl.cli import render

    names, rows = ["who", "day", "total"], [("Budi, S.", date(2025, 1, 10), Decimal("0.10")),
                                             (None, date(2025, 1, 11), Decimal("150000.00"))]
    assert render(names, rows, "csv").splitlines() == [
        "who,day,total", '"Budi, S.",2025-01-10,0.10', ",2025-01-11,150000.00"]
    assert json.loads(render(names, rows, "json")) == [
        {"who": "Budi, S.", "day": "2025-01-10", "total": "0.10"},
        {"who": None, "day": "2025-01-11", "total": "150000.00"}]


def test_progress_lines_say_rows_rate_and_time(caplog):
    from ewallet_etl.pipelines.progress import Progress

    progress = Progress("rows read", every=0.0)
    with caplog.at_level(logging.INFO, logger="ewallet_etl.progress"):
        progress.add(5_000)
        progress.add(5_000)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and messages[1].startswith("rows read: 10000 rows, ")
    assert messages[1].endswith(" s") and "rows/s" in messages[1]
