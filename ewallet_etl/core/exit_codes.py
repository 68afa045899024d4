"""Exit codes, the same for every command (README: "Commands and exit codes")."""

EXIT_OK = 0  # success (--reconcile: source and warehouse agree)
EXIT_FAILED = 1  # failed: nothing was committed past what had landed; re-run to repair
EXIT_USAGE = 2  # bad usage or configuration, or a source the run cannot follow safely
EXIT_REJECTS = 3  # completed with rejects: good rows landed, bad ones are in etl_quarantine
EXIT_MISMATCH = 4  # reconciliation found a difference between source and warehouse
