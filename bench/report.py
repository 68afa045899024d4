"""The bench's output: the machine, one table (printed, JSON and Markdown) and the targets.

Figures are medians over the repetitions ("best" the fastest; peak RSS the largest of them).
Ratios between methods that alternated are the median of run-by-run ratios, others the ratio
of the medians; all from this one run, so every method saw the same machine and data.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from methods import Method


def machine(server_version: str, mariadb_version: str) -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                .splitlines() if ln.startswith("model name")), platform.processor())
    mem_kib = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                       if ln.startswith("MemTotal")))
    versions = {}
    for package in ("pyarrow", "numpy", "connectorx", "clickhouse-driver", "chdb", "PyMySQL",
                    "pandas", "mysql-connector-python", "dlt", "duckdb"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(), "ram_gib": round(mem_kib / 2**20, 1), "cpu": cpu,
        "kernel": platform.release(), "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "mariadb": mariadb_version, "clickhouse_server": server_version, "packages": versions,
        "git": _git_head(),
    }


def _git_head() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def summarise(m: Method) -> dict:
    ok = [r for r in m.runs if r.returncode == 0]
    wall = statistics.median(r.wall for r in ok) if ok else None
    return {
        "method": m.name, "engine": m.engine, "group": m.group, "rows": m.rows,
        "runs": [{"wall": round(r.wall, 3), "peak_rss_mib": round(r.peak_rss_mib, 1),
                  "cpu": round(r.cpu, 3), "returncode": r.returncode,
                  "rows_read": r.rows_read} for r in m.runs],
        "wall_median": round(wall, 3) if wall else None,
        "wall_min": round(min(r.wall for r in ok), 3) if ok else None,
        "rows_per_s": round(m.rows / wall) if wall and m.rows else None,
        "peak_rss_mib": round(max(r.peak_rss_mib for r in ok), 1) if ok else None,
        "cpu_median": round(statistics.median(r.cpu for r in ok), 3) if ok else None,
        "rows_read": [r.rows_read for r in ok],
        "failed": [r.stderr for r in m.runs if r.returncode != 0][:1],
        "check": m.checked,
    }


def reference_of(row: dict, rows: list[dict]) -> dict | None:
    """The engine's own pull for pipeline runs; the server's pull for source/naive/dlt."""
    engine = row["engine"] if row["engine"] in ("clickhouse-server", "chdb") else \
        "clickhouse-server"
    return next((r for r in rows if r["engine"] == engine and r["group"] == "full"
                 and r["method"].startswith("reference")), None)


def paired_ratio(a: dict | None, b: dict | None) -> float | None:
    """Median of run-by-run ratios when a and b alternated (run i of each ran back to back, so
    a slow spell on the shared machine hits both); else the ratio of the medians."""
    if not (a and b and a["wall_median"] and b["wall_median"]):
        return None
    walls_a = [r["wall"] for r in a["runs"] if r["returncode"] == 0]
    walls_b = [r["wall"] for r in b["runs"] if r["returncode"] == 0]
    if a["group"] == b["group"] and len(walls_a) == len(walls_b) == len(a["runs"]):
        return statistics.median(x / y for x, y in zip(walls_a, walls_b, strict=True))
    return a["wall_median"] / b["wall_median"]


def add_ratios(rows: list[dict]) -> None:
    for row in rows:
        ref = reference_of(row, rows) if row["group"] == "full" else None
        ratio = paired_ratio(row, ref)
        row["ratio_to_reference"] = round(ratio, 2) if ratio is not None else None


def _find(rows: list[dict], engine: str, group: str, prefix: str) -> dict | None:
    return next((r for r in rows if r["engine"] == engine and r["group"] == group
                 and r["method"].startswith(prefix) and r["wall_median"]), None)


def targets(rows: list[dict]) -> list[dict]:
    out: list[dict] = []

    def add(name: str, value: float | None, limit: float, lower_is_better: bool = True,
            noop: float | None = None) -> None:
        """`noop`: the same figure for a run with nothing to load (the fixed cost of a run),
        for the targets a run's fixed cost bounds."""
        item = {"target": name, "value": None, "limit": limit, "met": None,
                "noop_run": round(noop, 2) if noop is not None else None}
        if value is not None:
            met = value <= limit if lower_is_better else value >= limit
            item |= {"value": round(value, 2), "met": met}
        out.append(item)

    ratio = paired_ratio

    for engine, limit in (("clickhouse-server", 2.0), ("chdb", 1.0)):
        full = _find(rows, engine, "full", "full load")
        add(f"{engine}: full load / own mysql() pull", ratio(full, _find(
            rows, engine, "full", "reference")), limit)
    server_full = _find(rows, "clickhouse-server", "full", "full load")
    add("naive / full load (server), times faster", ratio(
        _find(rows, "clickhouse-server", "full", "naive"), server_full), 10, False)
    add("dlt / full load (server), times faster", ratio(
        _find(rows, "duckdb", "full", "dlt"), server_full), 5, False)
    for engine in ("clickhouse-server", "chdb"):
        full = _find(rows, engine, "full", "full load")
        noop = _find(rows, engine, "incremental", "no-op")
        add(f"{engine}: peak RSS of the full load, MiB", full and full["peak_rss_mib"], 300,
            noop=noop and noop["peak_rss_mib"])
        big = _find(rows, engine, "scale", "full load")
        add(f"{engine}: peak RSS at --scale x rows / at 1x", big and full and
            big["peak_rss_mib"] / full["peak_rss_mib"], 1.10)
        add(f"{engine}: incremental / full load", ratio(
            _find(rows, engine, "incremental", "incremental"), full), 0.3,
            noop=ratio(noop, full))
        cdc = _find(rows, engine, "cdc", "CDC")
        add(f"{engine}: CDC replay, events/s", cdc and cdc["rows_per_s"], 50_000, False)
        for workload, limit in (("single-row", 12_000), ("100-row", 25_000)):
            binlog = _find(rows, engine, "binlog", f"binlog CDC, {workload}")
            add(f"{engine}: binlog CDC, {workload} statements, rows/s",
                binlog and binlog["rows_per_s"], limit, False)
    return out


def table(rows: list[dict]) -> str:
    head = ["group", "engine", "method", "wall s", "best s", "rows/s", "peak RSS MiB", "CPU s",
            "x reference", "read", "check"]
    body = [[r["group"], r["engine"], r["method"], _f(r["wall_median"], 3),
             _f(r["wall_min"], 3), _f(r["rows_per_s"], 0), _f(r["peak_rss_mib"], 0),
             _f(r["cpu_median"], 2), _f(r["ratio_to_reference"], 2), _read(r), _check(r)]
            for r in rows]
    return _markdown(head, body)


def targets_table(items: list[dict]) -> str:
    body = [[t["target"], _f(t["value"], 2), str(t["limit"]),
             {True: "met", False: "MISSED", None: "not measured"}[t["met"]],
             _f(t.get("noop_run"), 2) if t.get("noop_run") is not None else ""]
            for t in items]
    return _markdown(["target", "value", "limit", "", "no-op run"], body)


def write(path_json: Path, path_md: Path, doc: dict) -> None:
    path_json.parent.mkdir(parents=True, exist_ok=True)
    path_json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    m = doc["machine"]
    lines = [
        f"Benchmark of {doc['params']['rows']:,} transactions ({m['when']}, git {m['git']}): "
        f"median of {doc['params']['repeat']} alternating runs per method, each a fresh process.",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, Linux "
        f"{m['kernel']}, Python {m['python']}, MariaDB {m['mariadb']}, ClickHouse server "
        f"{m['clickhouse_server']}, chDB {m['packages'].get('chdb', '?')}; load average at "
        f"start {m['load_average_at_start']}.",
        "", table(doc["results"]), "", targets_table(doc["targets"]), "",
    ]
    path_md.write_text("\n".join(lines))


def _read(row: dict) -> str:
    """Rows the pipeline reported reading (per run, when they differ)."""
    counts = [c for c in row.get("rows_read") or [] if c is not None]
    if not counts:
        return ""
    return f"{counts[0]:,}" if len(set(counts)) == 1 else "/".join(f"{c:,}" for c in counts)


def _check(row: dict) -> str:
    check = row.get("check") or {}
    if not check:
        return ""
    return "ok" if check.get("ok") else "MISMATCH"


def _f(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _markdown(head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [head, *body]) for i in range(len(head))]

    def fmt(row: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    return "\n".join([fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *[fmt(r) for r in body]])
