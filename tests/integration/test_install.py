"""The project as a user installs it: a wheel built from the checkout, installed with its
dependencies and the extra `chdb` into a fresh virtual environment outside the repository
(pip resolves them: nothing is borrowed from this interpreter), gives the `ewallet-etl`
command, which runs the demo path from an empty folder: the batch, the two query files, and a
replay of the sample events shipped in the package. Real MariaDB; chDB."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, env_for, settings_for, warehouse_target

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(list(args), check=True, capture_output=True, text=True, timeout=900, cwd=cwd)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel and what pip resolves for `ewallet-etl[chdb]`."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"  # a copy: an in-place build would leave build/ in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "ewallet_etl", source / "ewallet_etl",
                    ignore=shutil.ignore_patterns("__pycache__"))
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-w", str(base / "wheels"), str(source))
    (wheel,) = (base / "wheels").glob("ewallet_etl-*.whl")
    run(sys.executable, "-m", "venv", str(base / "venv"))
    run(str(base / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[chdb]")
    return base / "venv"


def clean_env(env: dict[str, str], home: Path) -> dict[str, str]:
    """The settings only: no PYTHONPATH or VIRTUAL_ENV pointing back at the checkout."""
    kept = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**kept, "HOME": str(home), "XDG_DATA_HOME": str(home / "data")}


def command(venv: Path, cwd: Path, env: dict[str, str], *args: str,
            stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "ewallet-etl"), *args], cwd=cwd, env=env,
                          input=stdin, capture_output=True, text=True, timeout=300)


def test_the_wheel_installs_with_its_dependencies_and_only_the_extras_asked(venv):
    listed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list",
                             "--format=freeze"], capture_output=True, text=True, check=True)
    names = {line.split("==")[0].lower() for line in listed.stdout.splitlines()}
    assert {"ewallet-etl", "pymysql", "pyarrow", "connectorx", "clickhouse-driver",
            "chdb"} <= names
    assert not {"pymongo", "dagster", "mysql-replication", "matplotlib"} & names  # not asked
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import ewallet_etl; print(ewallet_etl.__file__)"],
                           capture_output=True, text=True, check=True, cwd="/")
    assert where.stdout.startswith(str(venv)), where.stdout  # not the checkout


def test_the_installed_command_runs_the_demo_outside_the_repository(venv, source_db, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for query in ("Querying_Total_Transaction_User.sql", "Querying_Total_Transaction_Merchant.sql"):
        shutil.copy(ROOT / query, elsewhere / query)
    target = warehouse_target("chdb", "analytics_dw", tmp_path / "warehouse")
    env = clean_env(env_for(settings_for(source_db, target)), tmp_path / "home")

    version = command(venv, elsewhere, env, "--version")
    assert version.returncode == 0 and version.stdout.startswith("ewallet-etl ")
    helped = command(venv, elsewhere, env, "cdc", "replay", "--help")
    assert helped.returncode == 0 and "CLICKHOUSE_URL" in helped.stdout

    done = command(venv, elsewhere, env, "run")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "full success: read=4 (new=4 overlap=0) loaded=4 sales=3 filtered=1" in done.stderr
    users = command(venv, elsewhere, env, "sql", "-f", "Querying_Total_Transaction_User.sql")
    assert users.returncode == 0, users.stderr[-2000:]
    assert [line.split() for line in users.stdout.splitlines()[2:5]] == [
        ["Andi", "Pratama", "2025-01-10", "50000.00"],
        ["Budi", "Santoso", "2025-01-10", "150000.00"],
        ["Budi", "Santoso", "2025-01-11", "65000.00"],
    ]
    merchants = command(venv, elsewhere, env, "sql", "-f",
                        "Querying_Total_Transaction_Merchant.sql", "--format", "csv")
    assert merchants.returncode == 0 and merchants.stdout.startswith("merchant_name,")
    agree = command(venv, elsewhere, env, "reconcile")
    assert agree.returncode == 0, agree.stderr[-2000:]
    replay = command(venv, elsewhere, env, "cdc", "replay")  # the packaged sample
    assert replay.returncode in (0, 3), replay.stderr[-2000:]  # the sample holds bad events
    assert "read=32 " in replay.stderr
    status = command(venv, elsewhere, env, "status", "--json")
    assert status.returncode == 0, status.stderr[-2000:]
    assert sorted(os.listdir(elsewhere)) == ["Querying_Total_Transaction_Merchant.sql",
                                             "Querying_Total_Transaction_User.sql"]


def test_the_default_warehouse_is_the_user_s_data_folder(venv, source_db, tmp_path):
    """No CLICKHOUSE_URL: chDB under $XDG_DATA_HOME/ewallet-etl/chdb, not the working folder."""
    target = warehouse_target("chdb", "analytics_dw", tmp_path / "unused")
    env = clean_env(env_for(settings_for(source_db, target)), tmp_path / "home")
    env.pop("CLICKHOUSE_URL")
    here = tmp_path / "here"
    here.mkdir()
    done = command(venv, here, env, "run")
    assert done.returncode == 0, done.stderr[-2000:]
    assert os.listdir(here) == []
    assert (tmp_path / "home" / "data" / "ewallet-etl" / "chdb").is_dir()


def test_an_unknown_command_is_refused_in_one_line(venv, tmp_path):
    done = command(venv, tmp_path, clean_env(dict(os.environ), tmp_path), "lodd")
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == "ewallet-etl: unknown command 'lodd'"
