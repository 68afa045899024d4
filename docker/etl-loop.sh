#!/bin/sh
# The app services' command: a job at start, then again every ETL_INTERVAL_SECONDS.
#
#   sh docker/etl-loop.sh [COMMAND ARGS...]   (default: python etl_pipeline.py, the batch ELT)
#   ETL_INTERVAL_SECONDS=300 (the default)  run; sleep 300 s after it ends; run; ... until SIGTERM
#   ETL_INTERVAL_SECONDS=0                  run once and exit with the run's exit code
#
# cdc_service runs the binlog stream with it (`... python cdc-stream.py --source binlog
# --follow`, ETL_INTERVAL_SECONDS=10): a stream ends only on an error or a signal, and is started
# again from its saved position after the pause.
#
# The interval counts from the end of a run, so two runs never overlap. A failed run (exit 1),
# one with rejects (3) or a reconcile mismatch (4) is logged and the loop goes on: the checkpoint
# only moves after a load landed, so the next run starts where the last good one ended. A bad
# configuration (2) ends the loop with 2: waiting does not fix it.
# SIGTERM/SIGINT (docker stop) are passed to the run in flight, then the loop exits 143/130:
# a run killed mid-way leaves the checkpoint untouched and the next one reloads idempotently.
set -u

interval=${ETL_INTERVAL_SECONDS:-300}
case $interval in
    '' | *[!0-9]*)
        echo "etl-loop: ETL_INTERVAL_SECONDS must be a whole number of seconds, got '$interval'" >&2
        exit 2 ;;
esac

child=
stop() {  # stop EXIT_CODE
    if [ -n "$child" ]; then
        kill -TERM "$child" 2>/dev/null
        wait "$child" 2>/dev/null
    fi
    exit "$1"
}
trap 'stop 143' TERM
trap 'stop 130' INT

# In the background + wait, so that a signal interrupts the wait and reaches the trap at once.
run() {
    "$@" &
    child=$!
    wait "$child"
    rc=$?
    child=
    return "$rc"
}

if [ "$#" -eq 0 ]; then
    set -- python etl_pipeline.py
fi

while :; do
    run "$@"
    rc=$?
    if [ "$interval" -eq 0 ]; then
        exit "$rc"
    fi
    if [ "$rc" -eq 2 ]; then
        echo "etl-loop: configuration error (exit 2), stopping" >&2
        exit 2
    fi
    echo "etl-loop: $(date -u +%Y-%m-%dT%H:%M:%SZ) run exited $rc; next run in ${interval}s" >&2
    run sleep "$interval"
done
