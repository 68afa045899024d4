"""CDC replay entry point: `python cdc-stream.py [FILE|-] [--batch-size N] [--optimize]`.

Replays insert/update/delete events (JSON array, JSON Lines or Debezium; default
cdc_events.json, `-` for stdin) into analytics_dw.cdc_transactions. `--help` lists the flags;
the logic lives in the `ewallet_etl` package (cdc_cli.py, cdc.py, events.py).
"""

if __name__ == "__main__":
    from ewallet_etl.cdc_cli import cdc_main
    from ewallet_etl.cli import exit_now

    exit_now(cdc_main())
