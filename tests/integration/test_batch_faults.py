"""Crashes and connection faults, with `etl_pipeline.py` run as a real process: SIGKILL at
fault points during full and incremental loads of 100,000 rows, servers unreachable at start,
connections dropped mid-run (a TCP proxy the test breaks), the run audit of a failed run,
`--reconcile` exit codes, and one run per pipeline. The oracle after every recovery: reconcile
plus exact count and sum.

Each test has its own warehouse (`isolated`): for chDB a folder of its own, handed to the
subprocess (`release_chdb`) and reopened afterwards, so a crashed writer never touches a folder
other tests use."""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from ewallet_etl.config import parse_clickhouse_url
from ewallet_etl.pipelines.batch import run_batch
from ewallet_etl.pipelines.reconcile import compare
from ewallet_etl.pipelines.status import status
from ewallet_etl.sources import mysql as source_mysql
from ewallet_etl.warehouse import open_warehouse, release_chdb
from tests.helpers import (
    SERVER_URL,
    ProxyProcess,
    checkpoint_of,
    generate_transactions,
    mysql_admin,
    mysql_exec,
    run_cli,
    settings_for,
    source_totals,
    unique,
    warehouse_target,
    warehouse_totals,
)

pytestmark = pytest.mark.integration

ROWS = 100_000
PASSWORD = "etl_password"


@pytest.fixture
def isolated(source_db, engine, tmp_path):
    target = warehouse_target(engine, unique("ewt_dw"), tmp_path / "chdb")
    yield settings_for(source_db, target, chunk_rows=20_000)
    wh = open_warehouse(settings_for(source_db, target))
    wh.execute("DROP DATABASE IF EXISTS analytics_dw" + (" SYNC" if engine == "chdb" else ""))
    wh.close()
    release_chdb()


@contextmanager
def warehouse(settings):
    wh = open_warehouse(settings)
    try:
        yield wh
    finally:
        wh.close()


def micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1)) // timedelta(microseconds=1)


def assert_checkpoint_never_ahead(settings) -> None:
    """Every source row changed before the checkpoint has landed at its version or a later
    one: the checkpoint never claims more than the warehouse holds."""
    checkpoint = checkpoint_of(settings)
    with warehouse(settings) as wh:
        landed = dict(wh.query("SELECT transaction_id, max(_version) "
                               "FROM analytics_dw.fact_sales GROUP BY transaction_id"))
    behind = [tx for tx, changed in mysql_exec(
        settings.mysql_database,
        "SELECT transaction_id, updated_at FROM transactions WHERE updated_at < %s", (checkpoint,))
        if landed.get(tx, -1) < micros(changed)]
    assert behind == [], f"{len(behind)} rows below the checkpoint never landed: {behind[:5]}"


def converge(settings):
    """A normal run, repeated while the checkpoint is still below the source's last change
    (open transactions of other people's tests on this shared server may cap a window)."""
    for _ in range(10):
        proc = run_cli(settings)
        assert proc.returncode == 0, proc.stderr[-3000:]
        ((last,),) = mysql_exec(settings.mysql_database, "SELECT max(updated_at) FROM transactions")
        if checkpoint_of(settings) > last:
            return proc
        time.sleep(0.5)
    raise AssertionError("the checkpoint never passed the source's last change")


def assert_warehouse_equals_source(settings) -> None:
    assert compare(settings).ok
    with warehouse(settings) as wh:
        assert warehouse_totals(wh) == source_totals(settings.mysql_database)


# --- 4. crash safety ---------------------------------------------------------------------------

KILLS = [
    ("full", "after_dimensions"),
    ("full", "during_insert"),
    ("full", "mid_insert"),
    ("full", "after_chunk_3"),
    ("full", "before_checkpoint"),
    ("incremental", "after_first_chunk"),
    ("incremental", "mid_insert"),
    ("incremental", "before_checkpoint"),
    ("incremental", "after_checkpoint"),
]


@pytest.mark.slow
@pytest.mark.parametrize("mode, kill_at", KILLS)
def test_sigkill_then_rerun_gives_exactly_the_source(isolated, mode, kill_at):
    db = isolated.mysql_database
    generate_transactions(db, ROWS)
    if mode == "incremental":
        run_batch(isolated)
        # Change every row after the full load: the next window holds all 100,004 of them.
        mysql_exec(db, "UPDATE transactions SET amount = amount + 1, "
                       "status = IF(status = 'PENDING', 'SUCCESS', status)")
    before = checkpoint_of(isolated)
    proc = run_cli(isolated, kill_at=kill_at)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    if kill_at == "after_checkpoint":
        assert checkpoint_of(isolated) > before
        assert_warehouse_equals_source(isolated)  # the window had landed before the save
    else:
        assert checkpoint_of(isolated) == before  # never ahead of what had landed
        # Everything had landed just before the save; at any other point some rows are
        # missing or stale (the kill really interrupted the load).
        assert compare(isolated).ok == (kill_at == "before_checkpoint")
    assert_checkpoint_never_ahead(isolated)
    converge(isolated)
    assert_warehouse_equals_source(isolated)
    n, *_ = source_totals(db)
    assert n == ROWS + 4


# --- 5. connection faults ----------------------------------------------------------------------

def assert_one_clear_error(proc, names: str) -> str:
    output = proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert proc.returncode == 1, output[-3000:]
    assert len(errors) == 1, proc.stderr
    assert names in errors[0], errors[0]
    assert PASSWORD not in output
    assert "Traceback" not in output and "panicked" not in output
    return errors[0]


def audit_rows(settings) -> list[tuple]:
    with warehouse(settings) as wh:
        return wh.query(
            "SELECT status, error FROM analytics_dw.etl_runs ORDER BY started_us, finished_at")


def test_mysql_unreachable_at_start_fails_after_retries_with_one_line(isolated):
    before = checkpoint_of(isolated)
    broken = replace(isolated, mysql_port=1)
    proc = run_cli(broken)
    line = assert_one_clear_error(proc, "MySQL at 127.0.0.1:1/")
    assert "retry 1/1" in proc.stderr and "Can't connect" in line
    assert checkpoint_of(isolated) == before
    assert audit_rows(isolated)[-1][0] == "failed"  # the warehouse was there: audited


def test_debug_adds_the_stack_trace(isolated):
    proc = run_cli(replace(isolated, mysql_port=1), "--debug")
    assert proc.returncode == 1 and "Traceback" in proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr


@pytest.mark.parametrize("engine", ["clickhouse-server"])
def test_clickhouse_unreachable_at_start_fails_with_one_line(isolated):
    before = checkpoint_of(isolated)
    broken = replace(isolated, warehouse=replace(isolated.warehouse, port=1))
    proc = run_cli(broken)
    assert_one_clear_error(proc, "ClickHouse at clickhouse://etl@127.0.0.1:1/")
    assert "retry 1/1" in proc.stderr
    assert checkpoint_of(isolated) == before


@pytest.mark.parametrize("engine", ["chdb"])
def test_chdb_folder_held_by_another_process_fails_with_one_line(isolated):
    with warehouse(isolated):  # this process holds the folder
        proc = run_cli(isolated, release=False)
    line = assert_one_clear_error(proc, f"chdb://{isolated.warehouse.path}")
    assert "another process" in line
    assert checkpoint_of(isolated).year == 1970


MYSQL_ROWS = 30_000  # ~2 MB through the proxy; it breaks after 0.5 MB


def test_mysql_dropping_mid_stream_fails_cleanly_and_is_audited(isolated):
    db = isolated.mysql_database
    generate_transactions(db, MYSQL_ROWS)
    with ProxyProcess(isolated.mysql_host, isolated.mysql_port, break_after=500_000) as proxy:
        proc = run_cli(replace(isolated, mysql_port=proxy.port, chunk_rows=5_000))
    assert_one_clear_error(proc, f"MySQL at 127.0.0.1:{proxy.port}/{db}")
    assert checkpoint_of(isolated).year == 1970  # untouched
    status, error = audit_rows(isolated)[-1]
    assert status == "failed" and f"MySQL at 127.0.0.1:{proxy.port}" in error


def test_mysql_blip_mid_stream_is_retried_and_the_load_is_exact(isolated):
    generate_transactions(isolated.mysql_database, MYSQL_ROWS)
    with ProxyProcess(isolated.mysql_host, isolated.mysql_port, break_after=500_000,
                      action="drop") as proxy:
        proc = run_cli(replace(isolated, mysql_port=proxy.port, chunk_rows=5_000))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "retry 1/1" in proc.stderr
    assert_warehouse_equals_source(isolated)
    assert audit_rows(isolated)[-1] == ("success", "")


def _behind_proxy(settings, port: int):
    return replace(settings, warehouse=replace(settings.warehouse, port=port))


@pytest.mark.parametrize("engine", ["clickhouse-server"])
def test_clickhouse_dropping_mid_insert_fails_cleanly(isolated):
    generate_transactions(isolated.mysql_database, MYSQL_ROWS)
    server = parse_clickhouse_url(SERVER_URL)
    with ProxyProcess(server.host, server.port, break_after=500_000, watch="up") as proxy:
        proc = run_cli(_behind_proxy(isolated, proxy.port))
    assert_one_clear_error(proc, f"ClickHouse at clickhouse://etl@127.0.0.1:{proxy.port}/")
    assert checkpoint_of(isolated).year == 1970
    converge(isolated)
    assert_warehouse_equals_source(isolated)


@pytest.mark.parametrize("engine", ["clickhouse-server"])
def test_clickhouse_blip_mid_insert_is_retried_and_the_load_is_exact(isolated):
    generate_transactions(isolated.mysql_database, MYSQL_ROWS)
    server = parse_clickhouse_url(SERVER_URL)
    with ProxyProcess(server.host, server.port, break_after=500_000, watch="up",
                      action="drop") as proxy:
        proc = run_cli(_behind_proxy(isolated, proxy.port))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "retry 1/1" in proc.stderr
    assert_warehouse_equals_source(isolated)


def test_stream_reports_a_dropped_connection_as_one_clear_error(source_db, capfd):
    from ewallet_etl.sources import mysql as source_mysql

    generate_transactions(source_db, MYSQL_ROWS)
    settings = settings_for(source_db, warehouse_target("clickhouse-server", "unused", None),
                            chunk_rows=5_000)
    params = {"low": datetime(1970, 1, 1), "high": datetime(2100, 1, 1)}
    with ProxyProcess(settings.mysql_host, settings.mysql_port, break_after=500_000) as proxy:
        broken = replace(settings, mysql_port=proxy.port)
        with pytest.raises(source_mysql.SourceUnavailable) as caught:
            for _ in source_mysql.stream(broken, source_mysql.TRANSACTIONS_SQL, params,
                                         source_mysql.TRANSACTIONS_KEY):
                pass
    message = str(caught.value)
    assert message.startswith(f"MySQL at 127.0.0.1:{proxy.port}/{source_db}: ")
    assert PASSWORD not in message and "\n" not in message
    out, err = capfd.readouterr()
    assert "panicked" not in err and "ERROR" not in err  # connectorx's own output is held back


# --- 6. bad rows through the command ----------------------------------------------------------

def test_bad_rows_make_the_command_exit_3_and_reruns_do_not_pile_up(isolated):
    from tests.integration.test_batch_correctness import BAD_ROWS, insert_bad_rows

    insert_bad_rows(isolated.mysql_database)
    for args in ((), ("--full-refresh",)):
        proc = run_cli(isolated, *args)
        assert proc.returncode == 3, proc.stderr[-3000:]
        assert f"rejected={len(BAD_ROWS)}" in proc.stderr
        assert "completed_with_rejects" in proc.stderr
        assert "Traceback" not in proc.stderr
    with warehouse(isolated) as wh:
        assert wh.query("SELECT count() FROM analytics_dw.etl_quarantine FINAL") == [
            (len(BAD_ROWS),)]
        assert wh.query("SELECT status, rows_rejected FROM analytics_dw.etl_runs") == [
            ("completed_with_rejects", len(BAD_ROWS))] * 2
    assert run_cli(isolated, "--reconcile").returncode == 0  # quarantined: absent on purpose


# --- 8. the reconcile command ------------------------------------------------------------------

def test_reconcile_command_exits_0_when_equal_and_4_naming_the_difference(isolated):
    db = isolated.mysql_database
    assert run_cli(isolated).returncode == 0
    proc = run_cli(isolated, "--reconcile")
    assert proc.returncode == 0, proc.stderr
    assert "agree" in proc.stderr
    mysql_exec(db, "DELETE FROM transactions WHERE transaction_id = 'TX1008'")  # a hard delete
    proc = run_cli(isolated, "--reconcile")
    assert proc.returncode == 4, proc.stderr
    assert "2025-01-11" in proc.stderr and "'TX1008'" in proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr


# --- 9. one run per pipeline -------------------------------------------------------------------

def hold_run_lock(settings):
    """What another run of the pipeline holds: its lock, on a connection of its own."""
    conn = mysql_admin(settings.mysql_database)
    with conn.cursor() as cur:
        cur.execute("SELECT GET_LOCK(%s, 0)", (source_mysql.run_lock_name(settings),))
        assert cur.fetchone() == (1,)
    return conn


def lock_holder(settings) -> int | None:
    name = source_mysql.run_lock_name(settings)
    return mysql_exec(settings.mysql_database, "SELECT IS_USED_LOCK(%s)", (name,))[0][0]


def kill_connection(settings, thread_id: int) -> None:
    mysql_exec(settings.mysql_database, "KILL %s", (thread_id,))
    deadline = time.monotonic() + 10
    while lock_holder(settings) == thread_id and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_run_while_another_is_in_progress_does_nothing_and_exits_1(isolated):
    before = checkpoint_of(isolated)
    other = hold_run_lock(isolated)
    try:
        proc = run_cli(isolated, "--full-refresh")
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert "another run of pipeline" in proc.stderr and "Traceback" not in proc.stderr
        assert PASSWORD not in proc.stdout + proc.stderr
        assert checkpoint_of(isolated) == before
        with warehouse(isolated) as wh:
            assert wh.query("SELECT count() FROM analytics_dw.fact_sales") == [(0,)]
            [(status, error)] = wh.query("SELECT status, error FROM analytics_dw.etl_runs")
            assert status == "failed" and error.startswith("another run of pipeline"), error
    finally:
        other.close()  # the other run ends: its lock goes with its connection
    proc = run_cli(isolated)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with warehouse(isolated) as wh:
        assert warehouse_totals(wh) == source_totals(isolated.mysql_database)
    assert lock_holder(isolated) is None  # released when the run ended


def test_the_run_lock_is_taken_again_on_reconnect_unless_another_run_took_it(isolated):
    control = source_mysql.ControlConnection(isolated, lock=True)
    first = control.get().thread_id()
    assert lock_holder(isolated) == first
    with control.get().cursor() as cur:  # a vanished run's lock lasts minutes, not 8 hours
        cur.execute("SELECT @@session.wait_timeout")
        assert cur.fetchone() == (source_mysql.RUN_LOCK_IDLE_SECONDS,)
    kill_connection(isolated, first)  # the run's connection drops: so does its lock
    second = control.get().thread_id()
    assert second != first and lock_holder(isolated) == second
    kill_connection(isolated, second)
    other = hold_run_lock(isolated)  # another run starts while this one is disconnected
    try:
        with pytest.raises(source_mysql.RunInProgress, match="another run of pipeline"):
            control.get()  # this run's next step stops it (before any checkpoint)
    finally:
        other.close()
        control.close()


def test_run_lock_names_fit_mysql_and_tell_pipelines_and_databases_apart(isolated):
    name = source_mysql.run_lock_name
    assert name(isolated) == f"ewallet_etl:{isolated.mysql_database}:{isolated.pipeline_name}"
    assert name(replace(isolated, pipeline_name="other")) != name(isolated)
    long_a, long_b = (replace(isolated, pipeline_name="p" * 100 + tail) for tail in "ab")
    assert len(name(long_a)) == len(name(long_b)) == 64 and name(long_a) != name(long_b)


# --- 6. interruptions --------------------------------------------------------------------------

@pytest.mark.parametrize("signal_at, code", [
    ("term:after_first_chunk", 128 + signal.SIGTERM),  # in the middle of the facts' INSERT
    ("int:after_dimensions", 128 + signal.SIGINT),
    ("term:before_checkpoint", 128 + signal.SIGTERM),
])
def test_sigterm_or_sigint_stops_the_run_cleanly_and_a_rerun_finishes(isolated, signal_at, code):
    generate_transactions(isolated.mysql_database, 20_000)
    before = checkpoint_of(isolated)
    proc = run_cli(replace(isolated, chunk_rows=2_000), kill_at=signal_at)
    output = proc.stdout + proc.stderr
    assert proc.returncode == code, output[-3000:]
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "interrupted by SIG" in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in output
    assert checkpoint_of(isolated) == before
    assert audit_rows(isolated)[-1][0] == "interrupted"
    assert run_cli(isolated).returncode == 0
    assert_warehouse_equals_source(isolated)


# --- 7. a run that died without closing -------------------------------------------------------

def test_a_sigkilled_run_is_shown_as_killed_by_the_next_run_and_by_status(isolated):
    generate_transactions(isolated.mysql_database, 5_000)
    proc = run_cli(replace(isolated, chunk_rows=1_000), kill_at="after_first_chunk")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert audit_rows(isolated) == []  # it wrote no end row: it is "open"

    shown = status(isolated)
    # The mode as asked: the first incremental run turns into a full load later on.
    assert [(r["pipeline"], r["mode"]) for r in shown.open_runs] == [
        (isolated.pipeline_name, "incremental")]
    assert "died without closing" in shown.to_text()

    rerun = run_cli(isolated)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "never finished" in rerun.stderr and "recorded as killed" in rerun.stderr
    rows = audit_rows(isolated)
    assert [outcome for outcome, _ in rows] == ["killed", "success"]
    assert "SIGKILL" in rows[0][1]
    assert status(isolated).open_runs == []
    assert run_cli(isolated).returncode == 0  # closed once, not again
    assert [outcome for outcome, _ in audit_rows(isolated)] == ["killed", "success", "success"]
    assert_warehouse_equals_source(isolated)
