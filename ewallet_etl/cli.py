"""Command lines: argument parsing, logging set-up and exit codes, nothing else.

Exit codes (the same for every command):
  0  success
  1  failed: nothing was committed past what had landed; the checkpoint is untouched
  2  bad usage or configuration
  3  completed with rejects: good rows landed, bad ones are in etl_quarantine
  4  reconciliation found a difference between source and warehouse
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from .config import ConfigError, Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTS, EXIT_MISMATCH = 0, 1, 2, 3, 4

log = logging.getLogger("ewallet_etl")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if level != "DEBUG":
        # clickhouse-driver logs every failed connect with a stack trace; ours is one line.
        logging.getLogger("clickhouse_driver").setLevel(logging.ERROR)


class _NoPandas:
    """A finder that says pandas is not installed (see `without_pandas`)."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"{name}: not used by this command", name=name)


def without_pandas() -> None:
    """pyarrow imports pandas, when installed (chDB's package depends on it), the first time
    it checks whether a value is a pandas object: 0.15 s and 35 MiB per run, for nothing, as
    these commands never hand it one. So for the rest of this command's process, pandas is
    not installed. Library users of the package are not affected: only the commands call it."""
    if "pandas" not in sys.modules and _NoPandas not in sys.meta_path:
        sys.meta_path.insert(0, _NoPandas)  # type: ignore[arg-type]


def exit_now(code: int) -> NoReturn:
    """End the command without the interpreter's teardown, which spends ~60 ms freeing
    modules and Arrow memory that the OS takes back anyway (a fifth of an incremental run).
    By now the command has closed what it opened (connections, the checkpoint, the audit row);
    here the chDB session is closed and the logs and output flushed. Only the entry points
    call it: `etl_main` and `cdc_main` return normally to any other caller."""
    warehouse = sys.modules.get("ewallet_etl.warehouse")
    if warehouse is not None:
        warehouse.release_chdb()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _settings() -> Settings | None:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        setup_logging("INFO")
        log.error("configuration: %s", exc)
        return None


def _fail(exc: BaseException, debug: bool) -> int:
    """One clear line naming what failed; the stack only with --debug."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    log.error("failed: %s", first, exc_info=debug)
    return EXIT_FAILED


def etl_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="etl_pipeline.py",
        description="Batch ELT: MySQL transactions -> ClickHouse star schema. "
        "Incremental from the checkpoint table by default.",
        epilog="Exit codes: 0 ok, 1 failed (or another run of the pipeline in progress), "
        "2 usage, 3 completed with rejects, 4 reconcile mismatch.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full-refresh", action="store_true",
                      help="ignore the checkpoint and reload everything (idempotent)")
    mode.add_argument("--reconcile", nargs="?", const="fact_sales", metavar="TABLE",
                      choices=("fact_sales", "cdc_transactions"),
                      help="compare the source's transactions with TABLE (fact_sales, the "
                      "default, or the CDC replica cdc_transactions) per day; exit 4 on any "
                      "difference")
    parser.add_argument("--debug", action="store_true", help="log stack traces on errors")
    args = parser.parse_args(argv)
    without_pandas()
    settings = _settings()
    if settings is None:
        return EXIT_USAGE
    setup_logging("DEBUG" if args.debug else settings.log_level)
    log.info("ewallet-etl: %s", settings.describe())
    try:
        if args.reconcile:
            from .reconcile import TARGETS, reconcile

            return EXIT_OK if reconcile(settings, TARGETS[args.reconcile]) else EXIT_MISMATCH
        from .batch import run_batch

        report = run_batch(settings, full_refresh=args.full_refresh)
    except Exception as exc:
        _fail(exc, args.debug)
        # A source the run cannot read safely (SourceSchemaError) is a usage problem.
        return getattr(exc, "exit_code", EXIT_FAILED)
    log.info("%s", report.summary())
    return EXIT_REJECTS if report.rows_rejected else EXIT_OK


def sql_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ewallet_etl.sql",
        description="Run SQL against the configured warehouse (CLICKHOUSE_URL, chDB or server) "
        "and print the result as a table. The database name analytics_dw is mapped to the "
        "configured one.",
    )
    parser.add_argument("sql", nargs="?", help="a SQL statement")
    parser.add_argument("-f", "--file", type=Path, help="a .sql file (one statement)")
    args = parser.parse_args(argv)
    if bool(args.sql) == bool(args.file):
        parser.error("give either SQL or --file")
    settings = _settings()
    if settings is None:
        return EXIT_USAGE
    setup_logging(settings.log_level)
    from .batch import open_warehouse
    from .warehouse import format_table

    text = args.file.read_text() if args.file else args.sql
    try:
        wh = open_warehouse(settings)
        names, rows = wh.query_with_names(text.strip().rstrip(";"))
    except Exception as exc:
        return _fail(exc, False)
    print(format_table(names, rows))
    return EXIT_OK
