"""CDC replay entry point: `python cdc-stream.py [FILE|-] [--batch-size N] [--optimize]`.

Replays insert/update/delete events (JSON array, JSON Lines or Debezium; default
cdc_events.json, `-` for stdin) into analytics_dw.cdc_transactions. `--help` lists the flags;
the logic lives in the `ewallet_etl` package (cdc_cli.py, pipelines/replay.py and
pipelines/binlog.py; the rules in core/).
"""

if __name__ == "__main__":
    import sys

    from ewallet_etl.cdc_cli import cdc_main
    from ewallet_etl.cli import handle_signals

    handle_signals()
    sys.exit(cdc_main())
