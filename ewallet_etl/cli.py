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
import signal
import sys
from pathlib import Path
from typing import Sequence

from ewallet_etl.config import ConfigError, Settings
from ewallet_etl.core.errors import Interrupted, first_line
from ewallet_etl.core.exit_codes import (  # noqa: F401
    EXIT_FAILED,
    EXIT_MISMATCH,
    EXIT_OK,
    EXIT_REJECTS,
    EXIT_USAGE,
)
from ewallet_etl.pipelines import faults

log = logging.getLogger("ewallet_etl")
ENVIRONMENT = ("Reads (README: Configuration; defaults: the local stack) MYSQL_HOST MYSQL_PORT "
               "MYSQL_USER MYSQL_PASSWORD MYSQL_DATABASE CLICKHOUSE_URL ETL_MAX_RETRIES LOG_LEVEL")
QUIET_LIBRARIES = ("clickhouse_driver", "pymysqlreplication")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if level != "DEBUG":  # libraries log failed connects with stack traces; ours is one line
        for name in QUIET_LIBRARIES:
            logging.getLogger(name).setLevel(logging.ERROR)
        # connectorx logs from Rust (its connection pool's retries), configured by RUST_LOG
        # when it is first imported, which happens later, in the first read.
        os.environ.setdefault("RUST_LOG", "off")


def handle_signals() -> None:
    """SIGINT and SIGTERM stop a command where it is, as `Interrupted` (the binlog's --follow
    installs its own, which finish the batch first). Only the entry points call it: a library
    user's process keeps its own handlers."""
    def interrupt(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)


def interrupted(exc: BaseException) -> int:
    """One line for a run stopped by a signal; its exit code (130 for SIGINT, 143 for SIGTERM)."""
    signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
    log.error("interrupted by %s: stopped before its checkpoint or position moved; run it again "
              "to finish (what landed is absorbed)", signal.Signals(signum).name)
    return 128 + signum


def read_settings() -> Settings | None:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        setup_logging("INFO")
        log.error("configuration: %s", exc)
        return None
    faults.arm(settings.kill_at)
    return settings


def _fail(exc: BaseException, debug: bool) -> int:
    """One clear line naming what failed; the stack only with --debug."""
    first = first_line(exc)
    log.error("failed: %s", first, exc_info=debug)
    return EXIT_FAILED


def etl_main(argv: Sequence[str] | None = None, prog: str = "etl_pipeline.py") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Batch ELT: MySQL transactions -> ClickHouse star schema. "
        "Incremental from the checkpoint table by default.",
        epilog="Exit codes: 0 ok, 1 failed (or another run of the pipeline in progress), "
        "2 usage, 3 completed with rejects, 4 reconcile mismatch. " + ENVIRONMENT
        + " ETL_PIPELINE_NAME ETL_CHUNK_ROWS ETL_LAG_SECONDS ETL_OVERLAP_SECONDS.",
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
    settings = read_settings()
    if settings is None:
        return EXIT_USAGE
    setup_logging("DEBUG" if args.debug else settings.log_level)
    log.info("ewallet-etl: %s", settings.describe())
    try:
        if args.reconcile:
            from ewallet_etl.pipelines.reconcile import TARGETS, reconcile

            return EXIT_OK if reconcile(settings, TARGETS[args.reconcile]) else EXIT_MISMATCH
        from ewallet_etl.pipelines.batch import run_batch

        report = run_batch(settings, full_refresh=args.full_refresh)
    except (Interrupted, KeyboardInterrupt) as exc:
        return interrupted(exc)
    except Exception as exc:
        _fail(exc, args.debug)
        # A source the run cannot read safely (SourceSchemaError) is a usage problem.
        return getattr(exc, "exit_code", EXIT_FAILED)
    log.info("%s", report.summary())
    return EXIT_REJECTS if report.rows_rejected else EXIT_OK


def status_main(argv: Sequence[str] | None = None, prog: str = "ewallet-etl status") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description="Where every pipeline stands: checkpoint or position, the "
        "warehouse it is tied to, lag, the last runs, quarantined rows. Read-only.",
        epilog=ENVIRONMENT + " ETL_PIPELINE_NAME.")
    parser.add_argument("--json", action="store_true", help="one JSON document, for machines")
    args = parser.parse_args(argv)
    settings = read_settings()
    if settings is None:
        return EXIT_USAGE
    setup_logging(settings.log_level)
    from ewallet_etl.pipelines.status import status

    try:
        report = status(settings)
    except (Interrupted, KeyboardInterrupt) as exc:
        return interrupted(exc)
    except Exception as exc:
        return _fail(exc, False)
    print(report.to_json() if args.json else report.to_text())
    return EXIT_OK


def sql_main(argv: Sequence[str] | None = None, prog: str = "python -m ewallet_etl.sql") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run SQL against the configured warehouse (CLICKHOUSE_URL, chDB or server) "
        "and print the result as a table. The database name analytics_dw is mapped to the "
        "configured one.",
        epilog="Reads CLICKHOUSE_URL, ETL_MAX_RETRIES, LOG_LEVEL (README: Configuration).",
    )
    parser.add_argument("sql", nargs="?", help="a SQL statement")
    parser.add_argument("-f", "--file", type=Path, help="a .sql file (one statement)")
    args = parser.parse_args(argv)
    if bool(args.sql) == bool(args.file):
        parser.error("give either SQL or --file")
    settings = read_settings()
    if settings is None:
        return EXIT_USAGE
    setup_logging(settings.log_level)
    from ewallet_etl.warehouse import format_table, open_warehouse

    try:
        text = args.file.read_text() if args.file else args.sql
    except OSError as exc:
        log.error("cannot read %s: %s", args.file, exc.strerror or exc)
        return EXIT_USAGE
    try:
        wh = open_warehouse(settings)
        names, rows = wh.query_with_names(text.strip().rstrip(";"))
    except (Interrupted, KeyboardInterrupt) as exc:
        return interrupted(exc)
    except Exception as exc:
        return _fail(exc, False)
    print(format_table(names, rows))
    return EXIT_OK
