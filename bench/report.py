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

from methods import RAW_FLOOR, Method


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


RAW_COPY = "connectorx -> clickhouse-connect"


def targets(rows: list[dict]) -> list[dict]:
    """The performance issue's targets (ratios of this run), then the first round's."""
    out: list[dict] = []

    def add(name: str, value: float | None, limit: float, lower_is_better: bool = True,
            noop: float | None = None, floor: float | None = None) -> None:
        """`noop`: the same figure for a run with nothing to load (the fixed cost of a run);
        `floor`: the same figure for the pipeline's reader straight into its writer (the raw
        copy, RAW_FLOOR): what no pipeline on that reader and writer can beat."""
        item = {"target": name, "value": None, "limit": limit, "met": None,
                "noop_run": round(noop, 2) if noop is not None else None,
                "raw_copy_floor": round(floor, 2) if floor is not None else None}
        if value is not None:
            met = value <= limit if lower_is_better else value >= limit
            item |= {"value": round(value, 2), "met": met}
        out.append(item)

    ratio = paired_ratio
    server, chdb = "clickhouse-server", "chdb"
    full = {e: _find(rows, e, "full", "full load") for e in (server, chdb)}
    big = {e: _find(rows, e, "scale", "full load") for e in (server, chdb)}
    pull = _find(rows, server, "full", "reference")
    noop = {e: _find(rows, e, "incremental", "no-op") for e in (server, chdb)}
    big_noop = {e: _find(rows, e, "scale", "no-op") for e in (server, chdb)}
    big_pull = _find(rows, server, "scale", "reference")
    add("server: full load / server's own pull, 10x rows", ratio(big[server], big_pull), 1.0,
        floor=ratio(_find(rows, server, "scale", RAW_FLOOR), big_pull))
    add("server: full load / server's own pull, 1x rows", ratio(full[server], pull), 1.3,
        noop=ratio(noop[server], pull), floor=ratio(_find(rows, server, "full", RAW_FLOOR), pull))
    add("server: the same from a server-only install (no chDB, no pandas), 1x rows", ratio(
        _find(rows, server, "full", "full load, server-only"), pull), 1.3)
    add("chdb: full load / connectorx -> chDB raw copy, 1x rows", ratio(
        full[chdb], _find(rows, chdb, "full", RAW_COPY)), 1.0)
    add("chdb: full load / connectorx -> chDB raw copy, 10x rows", ratio(
        big[chdb], _find(rows, chdb, "scale", RAW_COPY)), 1.0)
    for engine in (server, chdb):
        add(f"{engine}: --full-refresh / first load", ratio(
            _find(rows, engine, "full", "full refresh"), full[engine]), 1.25)
    add("ingestr / --full-refresh (server), times slower", ratio(
        _find(rows, server, "full", "ingestr"), _find(rows, server, "full", "full refresh")),
        1.0, False)
    for engine in (server, chdb):
        add(f"{engine}: incremental of the same changes, 10x rows / 1x rows", ratio(
            _find(rows, engine, "scale", "incremental"),
            _find(rows, engine, "incremental", "incremental")), 1.2)
    for engine in (server, chdb):
        add(f"{engine}: peak RSS of the first load, 10x rows / 1x rows",
            big[engine] and full[engine] and
            big[engine]["peak_rss_mib"] / full[engine]["peak_rss_mib"], 1.1)
        big_floor = _find(rows, engine, "scale", RAW_FLOOR)
        add(f"{engine}: peak RSS of the first load minus the no-op run's, 10x rows, MiB",
            big[engine] and big_noop[engine] and
            big[engine]["peak_rss_mib"] - big_noop[engine]["peak_rss_mib"], 150,
            noop=big_noop[engine] and big_noop[engine]["peak_rss_mib"],
            floor=big_floor and big_noop[engine] and
            big_floor["peak_rss_mib"] - big_noop[engine]["peak_rss_mib"])
    for engine in (server, chdb):
        binlog = _find(rows, engine, "binlog", "binlog CDC, 100-row")
        add(f"{engine}: binlog CDC into the star schema, 100-row statements, rows/s",
            binlog and binlog["rows_per_s"], 25_000, False)
    # The first round's targets, kept
    add("naive / full load (server), times slower", ratio(
        _find(rows, server, "full", "naive"), full[server]), 10, False)
    add("dlt / full load (server), times slower", ratio(
        _find(rows, "duckdb", "full", "dlt"), full[server]), 5, False)
    for engine in (server, chdb):
        cdc = _find(rows, engine, "cdc", "CDC")
        add(f"{engine}: CDC replay, events/s", cdc and cdc["rows_per_s"], 50_000, False)
        binlog = _find(rows, engine, "binlog", "binlog CDC, single-row")
        add(f"{engine}: binlog CDC, single-row statements, rows/s",
            binlog and binlog["rows_per_s"], 12_000, False)
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
             _optional(t.get("noop_run")), _optional(t.get("raw_copy_floor"))]
            for t in items]
    return _markdown(["target", "value", "limit", "", "no-op run", "raw copy"], body)


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


def _optional(value: float | None) -> str:
    """A figure only some targets have: blank where a target has none."""
    return "" if value is None else _f(value, 2)


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
