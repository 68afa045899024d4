"""The `ewallet-etl` command: one command for every job. Each subcommand is the parser of the
matching root script (etl_pipeline.py, cdc-stream.py, python -m ewallet_etl.sql), so flags,
help and exit codes are the same whichever way it is called."""

from __future__ import annotations

import sys
from typing import Sequence

from ewallet_etl.cdc_cli import cdc_main
from ewallet_etl.cli import (
    ENVIRONMENT,
    etl_main,
    handle_signals,
    init_main,
    report_main,
    sql_main,
    status_main,
)
from ewallet_etl.core.exit_codes import EXIT_OK, EXIT_USAGE

COMMANDS = {
    "run": "batch ELT into the star schema: incremental from the checkpoint "
           "(--full-refresh reloads everything)",
    "reconcile": "compare the source with fact_sales (or: reconcile cdc_transactions) per day; "
                 "exit 4 on a difference",
    "init": "check a source database of your own for what the pipeline needs (--apply: create "
            "its own objects)",
    "status": "where every pipeline stands: checkpoint or position, lag, last runs, "
              "quarantine (--json)",
    "sql": "run one SQL statement (or -f FILE) on the warehouse and print the result",
    "report": "the daily-volume report: sales per day and category, reconciled, and a PNG "
              "chart (--out FILE)",
    "cdc": "change streams into the star schema and the CDC replicas: cdc replay [FILE|-], "
           "cdc binlog [--follow], cdc mongodb [--follow], cdc reset",
}


def usage() -> str:
    from ewallet_etl import __version__

    lines = [f"usage: ewallet-etl [--version] COMMAND [ARGS]   (ewallet-etl {__version__})", "",
             "MySQL/MariaDB -> ClickHouse: batch ELT, reconciliation, CDC. "
             "`ewallet-etl COMMAND --help` for each.", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, text in COMMANDS.items()]
    lines += ["", ENVIRONMENT + ".", "Exit codes: 0 ok, 1 failed, 2 usage, 3 completed with "
              "rejects, 4 reconcile mismatch."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: SIGINT/SIGTERM handled, then the subcommand."""
    if argv is None:
        handle_signals()
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        return EXIT_OK if args else EXIT_USAGE
    if args[0] == "--version":
        from ewallet_etl import __version__

        print(f"ewallet-etl {__version__}")
        return EXIT_OK
    command, rest = args[0], args[1:]
    if command == "run":
        return etl_main(rest, prog="ewallet-etl run")
    if command == "reconcile":
        return etl_main(["--reconcile", *rest], prog="ewallet-etl reconcile")
    if command == "sql":
        return sql_main(rest, prog="ewallet-etl sql")
    if command == "status":
        return status_main(rest)
    if command == "report":
        return report_main(rest)
    if command == "init":
        return init_main(rest)
    if command == "cdc":
        return _cdc(rest)
    print(f"ewallet-etl: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
    return EXIT_USAGE


def _cdc(args: list[str]) -> int:
    kind, rest = (args[0], args[1:]) if args and not args[0].startswith("-") else ("replay", args)
    if kind == "replay":
        return cdc_main(rest, prog="ewallet-etl cdc replay")
    if kind == "binlog":
        return cdc_main(["--source", "binlog", *rest], prog="ewallet-etl cdc binlog")
    if kind == "mongodb":
        return cdc_main(["--source", "mongodb", *rest], prog="ewallet-etl cdc mongodb")
    if kind == "reset":
        return cdc_main(["--reset-replica", *rest], prog="ewallet-etl cdc reset")
    print(f"ewallet-etl cdc: unknown kind {kind!r} (replay, binlog, mongodb or reset)",
          file=sys.stderr)
    return EXIT_USAGE

