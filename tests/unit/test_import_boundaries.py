"""The plain CLI stays plain: its commands start without loading Dagster or matplotlib (the
extra `dagster`), so a server-only install works and start-up stays short. import-linter checks
the imports statically (pyproject.toml); this checks what a real process loads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT

# Runs main(ARGS) in a fresh interpreter, then prints which of the heavy modules got loaded.
PROBE = """
import json, sys
from ewallet_etl.command import main
try:
    code = main({args!r})
except SystemExit as exc:
    code = exc.code
print(json.dumps({{"code": code, "loaded": sorted(
    m for m in ("dagster", "matplotlib") if m in sys.modules)}}))
"""


@pytest.mark.parametrize("args", [
    ["--help"],
    ["run", "--help"],
    ["cdc", "binlog", "--help"],
    ["report", "--help"],
    ["status", "--help"],
])
def test_the_command_does_not_load_dagster_or_matplotlib(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "loaded": []}


def test_the_probe_would_see_dagster_if_it_were_loaded() -> None:
    """The same probe after importing the code location: proves the check above can fail."""
    probe = "import ewallet_etl.orchestration.definitions\n" + PROBE.format(args=["--help"])
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "dagster" in json.loads(proc.stdout.strip().splitlines()[-1])["loaded"]


# `--help` is fast: parsing loads nothing heavy (the data libraries load when a job runs).
HEAVY_PROBE = PROBE.replace('("dagster", "matplotlib")',
                            '("pyarrow", "numpy", "pandas", "connectorx", "chdb", "pymongo")')


@pytest.mark.parametrize("args", [
    ["--help"], ["run", "--help"], ["reconcile", "--help"], ["status", "--help"],
    ["sql", "--help"], ["init", "--help"], ["report", "--help"], ["cdc", "--help"],
    ["cdc", "replay", "--help"], ["cdc", "binlog", "--help"], ["cdc", "mongodb", "--help"],
    ["cdc", "reset", "--help"],
])
def test_help_loads_no_data_library(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-c", HEAVY_PROBE.format(args=args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"code": 0, "loaded": []}


def test_the_heavy_probe_would_see_pyarrow_if_it_were_loaded() -> None:
    probe = "import pyarrow\n" + HEAVY_PROBE.format(args=["--help"])
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert "pyarrow" in json.loads(proc.stdout.strip().splitlines()[-1])["loaded"]
