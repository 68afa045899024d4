"""`python -m ewallet_etl.sql "SELECT ..."` or `-f FILE`: ad-hoc SQL on the configured warehouse."""

import sys

from ewallet_etl.cli import sql_main

if __name__ == "__main__":
    sys.exit(sql_main())
