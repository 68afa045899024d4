"""The `ewallet-etl` command: one command for every job, each subcommand with a parser of its
own (its flags only, the variables it reads in its --help). The root scripts (etl_pipeline.py,
cdc-stream.py) keep their older combined parsers over the same functions and exit codes.
`--log-format` and `--debug` may also come before the command; nothing heavy is imported
before the arguments are parsed."""

from __future__ import annotations

import sys
from typing import Sequence

from ewallet_etl.cdc_cli import KINDS, cdc_kind_main, cdc_usage
from ewallet_etl.cli import (
    ENVIRONMENT,
    handle_signals,
    init_main,
    reconcile_main,
    report_main,
    run_main,
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

    lines = [f"usage: ewallet-etl [--version] [--log-format text|json] [--debug] COMMAND [ARGS]"
             f"   (ewallet-etl {__version__})", "",
             "MySQL/MariaDB -> ClickHouse: batch ELT, reconciliation, CDC. "
             "`ewallet-etl COMMAND --help` for each.", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, text in COMMANDS.items()]
    lines += ["", ENVIRONMENT, "Exit codes: 0 ok, 1 failed, 2 usage, 3 completed with "
              "rejects, 4 reconcile mismatch, 130/143 interrupted (SIGINT/SIGTERM)."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: SIGINT/SIGTERM handled, then the subcommand."""
    if argv is None:
        handle_signals()
    front, args = _global_flags(list(sys.argv[1:] if argv is None else argv))
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        return EXIT_OK if args else EXIT_USAGE
    if args[0] == "--version":
        from ewallet_etl import __version__

        print(f"ewallet-etl {__version__}")
        return EXIT_OK
    command, rest = args[0], [*args[1:], *front]
    if command == "run":
        return run_main(rest)
    if command == "reconcile":
        return reconcile_main(rest)
    if command == "sql":
        return sql_main(rest, prog="ewallet-etl sql")
    if command == "status":
        return status_main(rest)
    if command == "report":
        return report_main(rest)
    if command == "init":
        return init_main(rest)
    if command == "cdc":
        return _cdc(args[1:], front)
    print(f"ewallet-etl: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
    return EXIT_USAGE


def _global_flags(args: list[str]) -> tuple[list[str], list[str]]:
    """`--log-format X` and `--debug` before the command: handed to the subcommand's parser,
    which checks them (one place knows the choices)."""
    front: list[str] = []
    while args and (args[0] in ("--log-format", "--debug") or args[0].startswith("--log-format=")):
        take = 2 if args[0] == "--log-format" else 1
        front, args = front + args[:take], args[take:]
    return front, args


def _cdc(args: list[str], front: list[str]) -> int:
    if args and args[0] in ("-h", "--help"):
        print(cdc_usage())
        return EXIT_OK
    if not args:
        print(cdc_usage(), file=sys.stderr)
        return EXIT_USAGE
    kind, rest = (args[0], args[1:]) if not args[0].startswith("-") else ("replay", args)
    if kind in KINDS:
        return cdc_kind_main(kind, [*rest, *front])
    print(f"ewallet-etl cdc: unknown kind {kind!r} (replay, binlog, mongodb or reset)",
          file=sys.stderr)
    return EXIT_USAGE
