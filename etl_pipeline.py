"""Batch ELT entry point: `python etl_pipeline.py [--full-refresh | --reconcile]`.

The logic lives in the `ewallet_etl` package; this file keeps the write-up's flat functions
as thin aliases so existing callers keep working.
"""


if __name__ == "__main__":
    import sys

    from ewallet_etl.cli import etl_main, handle_signals

    handle_signals()
    sys.exit(etl_main())

from ewallet_etl.pipelines.write_up import (  # noqa: F401  (re-exported for the write-up's callers)
    extract_data,
    get_last_watermark,
    load_data,
    transform_data,
    update_watermark,
)
