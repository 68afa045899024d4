"""SIGINT and SIGTERM in the commands that had no clean ending: one line, 130/143, no traceback,
and promptly, even while a server does not answer (a listening socket that never speaks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Iterator

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def start(args: list[str], **env: str) -> subprocess.Popen[str]:
    full = {**os.environ, "ETL_MAX_RETRIES": "0", "LOG_LEVEL": "INFO", **env}
    return subprocess.Popen([sys.executable, "-m", "ewallet_etl", *args], cwd=ROOT, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen[str], *signals: int, settle: float = 1.5) -> tuple[int, str]:
    time.sleep(settle)  # past the start-up, into the hung connect
    assert proc.poll() is None, proc.communicate()
    for signum in signals:
        proc.send_signal(signum)
        time.sleep(0.3)
    try:
        _, err = proc.communicate(timeout=10)  # promptly: not after a connect timeout
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, err


def assert_one_line(err: str, signame: str) -> None:
    lines = [line for line in err.splitlines() if "ERROR" in line or "Traceback" in line]
    assert "Traceback" not in err, err
    assert len(lines) == 1 and f"interrupted by {signame}" in lines[0], err


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_init_stops_in_one_line(silent_port, signum, code):
    proc = start(["init"], MYSQL_PORT=str(silent_port))
    returncode, err = stop(proc, signum)
    assert returncode == code, err
    assert_one_line(err, signal.Signals(signum).name)


def test_cdc_reset_stops_in_one_line(silent_port):
    proc = start(["cdc", "reset"], CLICKHOUSE_URL=f"clickhouse://etl@127.0.0.1:{silent_port}/dw")
    returncode, err = stop(proc, signal.SIGTERM)
    assert returncode == 143, err
    assert_one_line(err, "SIGTERM")


def test_cdc_binlog_abandons_a_hung_warehouse_connect_at_the_first_signal(silent_port):
    proc = start(["cdc", "binlog"], CLICKHOUSE_URL=f"clickhouse://etl@127.0.0.1:{silent_port}/dw",
                 CDC_STREAM_NAME="signal_test")
    returncode, err = stop(proc, signal.SIGTERM, settle=3.0)
    assert returncode == 143, err
    assert_one_line(err, "SIGTERM")


def test_cdc_mongodb_abandons_a_hung_warehouse_connect_at_the_first_signal(silent_port):
    """Like the binlog: a first signal is graceful only while the stream streams."""
    proc = start(["cdc", "mongodb"],
                 CLICKHOUSE_URL=f"clickhouse://etl@127.0.0.1:{silent_port}/dw")
    returncode, err = stop(proc, signal.SIGTERM, settle=3.0)
    assert returncode == 143, err
    assert_one_line(err, "SIGTERM")
