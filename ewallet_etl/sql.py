"""`python -m ewallet_etl.sql "SELECT ..."` or `-f FILE`: ad-hoc SQL on the configured warehouse."""

import sys

from ewallet_etl.cli import handle_signals, sql_main

if __name__ == "__main__":
    handle_signals()
    sys.exit(sql_main())
