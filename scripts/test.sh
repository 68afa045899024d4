#!/usr/bin/env bash
# The whole test suite on real servers: set up .venv, start MariaDB and ClickHouse 18.16
# (scripts/stack.sh), run pytest. Extra arguments go to pytest, e.g. -m "not slow".
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || exit 1
scripts/stack.sh up || exit 1
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
