"""The benchmark keeps working: bench/run.py on a few thousand rows, one repetition, under its
own names. Correctness only (every method ran and loaded what the source holds); speed is
never asserted. The naive and dlt methods run in the baselines' venv (`scripts/setup.sh
--bench`): they are expected exactly when it has their packages.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def venv_has(venv: str, *modules: str) -> bool:
    """bench/common.py's check of a venv of the bench (.venv-bench, .venv-peers)."""
    spec = importlib.util.spec_from_file_location("bench_common", ROOT / "bench" / "common.py")
    common = sys.modules.setdefault("bench_common", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(common)
    return common.venv_has(ROOT / venv / "bin" / "python", *modules)


def baseline_has(*modules: str) -> bool:
    return venv_has(".venv-bench", *modules)


PEERS = ROOT / ".venv-peers"


def test_bench_runs_every_method_and_each_loads_the_source_exactly(tmp_path: Path):
    prefix = f"bsmoke_{uuid.uuid4().hex[:8]}"
    out = tmp_path / "latest.json"
    cmd = [sys.executable, str(ROOT / "bench" / "run.py"), "--rows", "5000", "--repeat", "1",
           "--scale", "2", "--changes", "300", "--events", "3000", "--prefix", prefix,
           "--work", str(tmp_path / "work"), "--out", str(out), "--cleanup"]
    naive = baseline_has("pandas", "mysql.connector", "clickhouse_driver")
    dlt = baseline_has("dlt", "duckdb")
    cmd += ([] if naive else ["--no-naive"]) + ([] if dlt else ["--no-dlt"])
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    doc = json.loads(out.read_text())
    got = {(r["engine"], r["group"], r["method"].split(" (")[0].split(":")[0]): r
           for r in doc["results"]}
    expected = {
        ("source", "full", "floor"),
        ("clickhouse-server", "full", "reference"), ("chdb", "full", "reference"),
        ("clickhouse-server", "full", "full load"), ("chdb", "full", "full load"),
        ("clickhouse-server", "full", "full refresh"), ("chdb", "full", "full refresh"),
        ("clickhouse-server", "incremental", "incremental"), ("chdb", "incremental", "incremental"),
        ("clickhouse-server", "incremental", "no-op run"), ("chdb", "incremental", "no-op run"),
        ("clickhouse-server", "cdc", "CDC replay"), ("chdb", "cdc", "CDC replay"),
        ("clickhouse-server", "full", "server pull, plain copy"),
        ("clickhouse-server", "full", "floor"), ("clickhouse-server", "scale", "floor"),
        ("chdb", "full", "floor"), ("chdb", "scale", "floor"),
        ("clickhouse-server", "scale", "reference"),
        ("clickhouse-server", "scale", "full load"), ("chdb", "scale", "full load"),
        ("clickhouse-server", "scale", "incremental"), ("chdb", "scale", "incremental"),
        ("clickhouse-server", "scale", "no-op run"), ("chdb", "scale", "no-op run"),
    }
    if (ROOT / ".venv-server" / "bin" / "python").exists():  # scripts/setup.sh --bench
        expected.add(("clickhouse-server", "full", "full load, server-only install"))
    if (PEERS / "bin" / "ingestr").exists():
        expected.add(("clickhouse-server", "full", "ingestr 1.1.22 -> server"))
    if list(PEERS.glob("lib/python*/site-packages/sling_linux_amd64/bin/sling-linux-amd64")):
        expected.add(("clickhouse-server", "full",
                      "sling 1.4.11 --stdout, piped into clickhouse-client"))
    if venv_has(".venv-peers", "connectorx", "clickhouse_connect", "chdb", "pyarrow"):
        expected |= {("chdb", group, "connectorx -> clickhouse-connect insert_arrow -> chDB")
                     for group in ("full", "scale")}
    if "binlog" in subprocess.run([sys.executable, str(ROOT / "cdc-stream.py"), "--help"],
                                  cwd=ROOT, capture_output=True, text=True).stdout:
        expected |= {(engine, "binlog", f"binlog CDC, {workload} statements")
                     for engine in ("clickhouse-server", "chdb")
                     for workload in ("single-row", "100-row")}
    if naive:
        expected.add(("clickhouse-server", "full", "naive"))
    if dlt:
        expected.add(("duckdb", "full", "dlt"))
    assert set(got) == expected
    for key, row in got.items():
        assert row["wall_median"] and row["peak_rss_mib"], key
        assert all(run["returncode"] == 0 for run in row["runs"]), key
        if key[0] != "source":  # the floor loads nothing
            assert row["check"]["ok"], (key, row["check"])
    for engine in ("clickhouse-server", "chdb"):  # the no-op run had nothing to read
        assert got[(engine, "incremental", "no-op run")]["rows_read"] == [0]
        assert got[(engine, "incremental", "incremental")]["rows_read"] == [600]
    noop_figures = [t for t in doc["targets"] if t["noop_run"] is not None]
    # the server's 1x load beside its no-op run; RSS over the no-op run at scale, per engine
    assert len(noop_figures) == 3, doc["targets"]
    # the server's load targets beside the raw copy of the pipeline's reader into its writer
    floors = [t["target"] for t in doc["targets"] if t["raw_copy_floor"] is not None]
    assert floors == [
        "server: full load / server's own pull, 10x rows",
        "server: full load / server's own pull, 1x rows",
        "clickhouse-server: peak RSS of the first load minus the no-op run's, 10x rows, MiB",
        "chdb: peak RSS of the first load minus the no-op run's, 10x rows, MiB"], doc["targets"]
    assert doc["source"]["rows"] == 5000
    assert {t["target"] for t in doc["targets"]}
    assert out.with_suffix(".md").read_text().count("|") > 50
