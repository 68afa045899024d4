"""Each subcommand has a parser of its own: its --help shows its flags (not another command's)
and names every variable it reads; a flag of another command is refused in one line (exit 2);
--log-format is accepted by every subcommand and before the command."""

from __future__ import annotations

import re

import pytest

from ewallet_etl.command import main

# Read by every command: the settings' own machinery.
COMMON = ("NAME_FILE", "ETL_ENV_FILE", "LOG_LEVEL")
MYSQL = ("MYSQL_URL", "MYSQL_HOST", "MYSQL_PORT", "MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_DATABASE")
WAREHOUSE = ("CLICKHOUSE_URL", "CLICKHOUSE_PASSWORD", "ETL_MAX_RETRIES")
MONGODB = ("MONGODB_URL", "MONGODB_DATABASE", "MONGODB_COLLECTION")


def help_of(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    try:
        code = main([*args, "--help"])
    except SystemExit as done:  # argparse's --help
        code = done.code
    assert code == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("args, reads", [
    (["run"], (*MYSQL, *WAREHOUSE, *MONGODB, "ETL_PIPELINE_NAME", "ETL_CHUNK_ROWS",
               "ETL_LAG_SECONDS", "ETL_OVERLAP_SECONDS")),
    (["reconcile"], (*MYSQL, *WAREHOUSE, *MONGODB, "ETL_PIPELINE_NAME")),
    (["status"], (*MYSQL, *WAREHOUSE, "ETL_PIPELINE_NAME", "ETL_MAX_LAG_SECONDS",
                  "CDC_STREAM_NAME")),
    (["sql"], WAREHOUSE),
    (["init"], MYSQL),
    (["report"], (*MYSQL, *WAREHOUSE)),
    (["cdc", "replay"], (*MYSQL, *WAREHOUSE, "CDC_STAR_SCHEMA")),
    (["cdc", "binlog"], (*MYSQL, *WAREHOUSE, "CDC_STREAM_NAME", "CDC_SERVER_ID",
                         "CDC_BATCH_EVENTS", "CDC_BATCH_MS", "CDC_STAR_SCHEMA",
                         "ETL_CHUNK_ROWS")),
    (["cdc", "mongodb"], (*MONGODB, *WAREHOUSE, "CDC_BATCH_EVENTS", "CDC_BATCH_MS",
                          "ETL_CHUNK_ROWS")),
    (["cdc", "reset"], WAREHOUSE),
])
def test_each_help_names_every_variable_its_command_reads(capsys, args, reads):
    text = help_of(capsys, *args)
    missing = [name for name in (*COMMON, *reads) if name not in text]
    assert not missing, (args, missing)
    assert "--log-format" in text


def test_the_cdc_kinds_have_their_own_flags(capsys):
    cdc = help_of(capsys, "cdc")
    assert all(kind in cdc for kind in ("replay", "binlog", "mongodb", "reset"))
    assert not re.search(r"\bFILE\b", cdc) and "--batch-size" not in cdc
    binlog = help_of(capsys, "cdc", "binlog")
    assert "--follow" in binlog and "--resnapshot" in binlog
    assert not re.search(r"\bFILE\b", binlog) and "--source" not in binlog
    assert "--batch-size" not in binlog
    replay = help_of(capsys, "cdc", "replay")
    assert re.search(r"\bFILE\b", replay) and "--batch-size" in replay and "--source-db" in replay
    assert "--source " not in replay and "--follow" not in replay
    assert "--follow" in help_of(capsys, "cdc", "mongodb")
    assert "--follow" not in help_of(capsys, "cdc", "reset")


def test_reconcile_has_its_own_parser(capsys):
    text = help_of(capsys, "reconcile")
    assert "--full-refresh" not in text and "--since" not in text and "cdc_transactions" in text
    with pytest.raises(SystemExit) as done:
        main(["reconcile", "--full-refresh"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "--full-refresh" in err and "--reconcile" not in err


@pytest.mark.parametrize("args", [
    ["cdc", "binlog", "--source", "file"],
    ["cdc", "binlog", "events.json"],
    ["cdc", "mongodb", "--batch-size", "5"],
    ["cdc", "replay", "--follow"],
    ["cdc", "reset", "--resnapshot"],
])
def test_a_flag_of_another_cdc_kind_is_refused(capsys, args):
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("ewallet-etl cdc ")


@pytest.mark.parametrize("args", [
    ["status"], ["sql"], ["init"], ["report"], ["run"], ["reconcile"], ["cdc", "replay"],
    ["cdc", "binlog"], ["cdc", "mongodb"], ["cdc", "reset"],
])
def test_every_subcommand_takes_log_format_after_or_before_the_command(capsys, args):
    # an invalid choice proves the flag is known: argparse names it and exits 2
    for argv in ([*args, "--log-format", "xml"], ["--log-format", "xml", *args]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 2
        assert "invalid choice: 'xml'" in capsys.readouterr().err, argv


def test_the_docs_tell_users_to_type_ewallet_etl():
    """Command blocks (what a reader types) in the README and docs use `ewallet-etl`; the root
    scripts appear there only on a line that says it is an alias (prose may name them)."""
    from tests.helpers import ROOT

    offenders = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        in_block = False
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.startswith("```"):
                in_block = line.strip() in ("```bash", "```sh", "```console")
                continue
            old_script = re.search(r"(etl_pipeline|cdc-stream)\.py", line)
            if in_block and old_script and "alias" not in line:
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("argv", [["--log-format", "json", "status"],
                                  ["sql", "SELECT 1", "--log-format", "json"],
                                  ["--log-format=json", "cdc", "binlog"]])
def test_a_refused_setting_is_one_json_line_in_json_mode(argv):
    import json
    import os
    import subprocess
    import sys

    from tests.helpers import ROOT

    done = subprocess.run([sys.executable, "-m", "ewallet_etl", *argv], cwd=ROOT,
                          env={**os.environ, "LOG_LEVEL": "LOUD"}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and "LOG_LEVEL must be one of" in entry["message"]
