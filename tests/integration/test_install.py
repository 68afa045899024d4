"""The project as a user installs it: a wheel built from the checkout and installed outside the
repository gives the `ewallet-etl` command, which runs the main job and the queries from an
empty folder, with the warehouse DDL shipped inside the package. Real MariaDB; chDB."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, env_for, settings_for, warehouse_target

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", *args],
                   check=True, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built without network isolation and installed alone (its dependencies are
    this interpreter's) into a folder of its own."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"  # a copy: an in-place build would leave build/ in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "ewallet_etl", source / "ewallet_etl",
                    ignore=shutil.ignore_patterns("__pycache__"))
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(base / "wheels"), str(source))
    (wheel,) = (base / "wheels").glob("ewallet_etl-*.whl")
    pip("install", "--no-deps", "--target", str(base / "site"), str(wheel))
    return base / "site"


def command(site: Path, cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(site / "bin" / "ewallet-etl"), *args], cwd=cwd,
                          env={**env, "PYTHONPATH": str(site)}, capture_output=True, text=True,
                          timeout=300)


def test_the_installed_command_runs_the_main_job_outside_the_repository(installed, source_db,
                                                                        tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for query in ("Querying_Total_Transaction_User.sql", "Querying_Total_Transaction_Merchant.sql"):
        shutil.copy(ROOT / query, elsewhere / query)
    target = warehouse_target("chdb", "analytics_dw", tmp_path / "warehouse")
    env = env_for(settings_for(source_db, target))
    env.pop("PYTHONPATH", None)

    probe = "import ewallet_etl; print(ewallet_etl.__file__)"
    where = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere,
                           env={**env, "PYTHONPATH": str(installed)},
                           capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(installed)), where.stdout  # not the checkout

    version = command(installed, elsewhere, env, "--version")
    assert version.returncode == 0 and version.stdout.startswith("ewallet-etl ")
    helped = command(installed, elsewhere, env, "run", "--help")
    assert helped.returncode == 0 and "CLICKHOUSE_URL" in helped.stdout

    done = command(installed, elsewhere, env, "run")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "full success: read=4 (new=4 overlap=0) loaded=4 sales=3 filtered=1" in done.stderr
    users = command(installed, elsewhere, env, "sql", "-f", "Querying_Total_Transaction_User.sql")
    assert users.returncode == 0, users.stderr[-2000:]
    assert [line.split() for line in users.stdout.splitlines()[2:5]] == [
        ["Andi", "Pratama", "2025-01-10", "50000.00"],
        ["Budi", "Santoso", "2025-01-10", "150000.00"],
        ["Budi", "Santoso", "2025-01-11", "65000.00"],
    ]
    agree = command(installed, elsewhere, env, "reconcile")
    assert agree.returncode == 0, agree.stderr[-2000:]
    assert sorted(os.listdir(elsewhere)) == ["Querying_Total_Transaction_Merchant.sql",
                                             "Querying_Total_Transaction_User.sql"]


def test_an_unknown_command_is_refused_in_one_line(installed, tmp_path):
    done = command(installed, tmp_path, dict(os.environ), "lodd")
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == "ewallet-etl: unknown command 'lodd'"
