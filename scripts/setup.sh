#!/usr/bin/env bash
# Create .venv (once) and install the pinned requirements into it. Safe to re-run.
#   scripts/setup.sh          .venv: the pipeline (requirements.txt) + the test tools
#   scripts/setup.sh --bench  also .venv-bench: the benchmark's baselines (naive pandas, dlt),
#                             kept apart: the pipeline is measured with only its own packages;
#                             and .venv-peers: the peer tools (bench/requirements-peers.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
# The project itself, editable: .venv/bin/ewallet-etl runs this checkout's code.
if [ ! -x .venv/bin/ewallet-etl ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
fi
# Byte-code now, as the image does: a run then never compiles the package (~20 ms a start-up),
# even where PYTHONDONTWRITEBYTECODE is set. Stale files are recompiled in memory, never used.
.venv/bin/python -m compileall -q ewallet_etl
if [ "${1:-}" = "--bench" ]; then
  # A server-only install (the package without extras: no chDB, so no pandas), timed beside
  # the full one: what a run costs when nothing imports pandas.
  if [ ! -x .venv-server/bin/python ]; then
    python3 -m venv .venv-server
  fi
  .venv-server/bin/python -m pip install -q --disable-pip-version-check -e .
  if [ ! -x .venv-bench/bin/python ]; then
    python3 -m venv .venv-bench
  fi
  .venv-bench/bin/python -m pip install -q --disable-pip-version-check \
    -r requirements.txt -r bench/requirements.txt
  # The peer tools (bench/peers.py: ingestr, sling, connectorx -> chDB) in .venv-peers, apart
  # from both. Optional: the bench skips a missing one, so a wheel that does not install here is
  # a note, not a failure.
  if [ -x .venv-peers/bin/python ] || python3 -m venv .venv-peers; then
    if ! .venv-peers/bin/python -m pip install -q --disable-pip-version-check \
        -r bench/requirements-peers.txt; then
      for req in $(grep -v -e '^#' -e '^$' bench/requirements-peers.txt); do
        .venv-peers/bin/python -m pip install -q --disable-pip-version-check "$req" ||
          echo "note: $req did not install into .venv-peers; the bench skips its peer" >&2
      done
    fi
  else
    echo "note: no .venv-peers (python3 -m venv failed); the bench skips the peer tools" >&2
  fi
fi
