"""`python -m ewallet_etl COMMAND ...`: the `ewallet-etl` command."""

import sys

from ewallet_etl.command import main

if __name__ == "__main__":
    sys.exit(main())
