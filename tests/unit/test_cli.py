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
