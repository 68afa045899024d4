"""The Docker path, checked statically: no test here starts a container (that needs a Docker
engine, which CI does not have).

* docker-compose.yml resolves with `docker-compose config` (Debian's 1.29, or compose v2) and
  .env.example, without warnings, and refuses to start without a secret;
* every setting the code reads is documented in .env.example and reaches both Python services,
  every documented variable is read by something, nothing is interpolated undocumented;
* inside compose the settings parse and point at the services; ports are on 127.0.0.1 only;
  the servers have healthchecks that query, the app waits for them, the DDLs are init scripts;
* every script a service or the image runs is in the repository and in the build context;
* docker/etl-loop.sh loops, passes exit codes and stops on SIGTERM as it says.

A missing docker-compose fails the compose tests when CI is set, and skips them elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ewallet_etl.config import ENV_DEFAULTS, Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
LOOP = ROOT / "docker" / "etl-loop.sh"
SERVERS = ("mysql_source", "clickhouse")
APPS = ("etl_service", "cdc_service")

# Documented in .env.example but not read by ewallet_etl: who reads it instead.
NOT_READ_BY_CODE = {
    "MYSQL_ROOT_PASSWORD": "the mysql image (root account) and docker/mysql-init/20-etl-grants.sh",
    "CLICKHOUSE_USER": "the clickhouse image creates the user; compose puts it in CLICKHOUSE_URL",
    "CH_TCP_PORT": "compose: host port of ClickHouse's native protocol (scripts/stack.sh: same)",
    "CH_HTTP_PORT": "compose: host port of ClickHouse's HTTP interface (scripts/stack.sh: same)",
    "ETL_INTERVAL_SECONDS": "docker/etl-loop.sh, etl_service's loop",
    "MONGO_PORT": "compose: host port of the MongoDB service (scripts/stack.sh: same)",
    "DAGSTER_PORT": "compose: host port of the Dagster UI (scripts/dagster.sh: same)",
}
# Read by the code but deliberately undocumented and never passed by compose.
TEST_ONLY = {
    "ETL_KILL_AT": "fault-injection hook of the kill tests (batch.fault_point): SIGKILLs the run",
}
# Read by the code, documented in the README, but meaningless inside .env or compose: where the
# .env file itself is.
ABOUT_THE_ENV_FILE = {"ETL_ENV_FILE": "the path of a .env file (compose passes settings directly)"}
# Settings an app service gets beyond what the code reads: service -> names.
APP_EXTRAS = {"etl_service": {"ETL_INTERVAL_SECONDS"}, "cdc_service": {"ETL_INTERVAL_SECONDS"}}
# Scripts (and their flags) a service runs that parallel work is still adding: missing -> xfail,
# present -> checked. Remove the entry once the work has landed, so a regression fails again.
SECRETS = ("MYSQL_PASSWORD", "MYSQL_ROOT_PASSWORD", "CLICKHOUSE_PASSWORD")
ENV_READ = re.compile(r"""(?:environ(?:\.get)?|getenv)\s*[(\[]\s*["']([A-Z][A-Z0-9_]*)["']""")


# --- what the code reads and what .env.example documents ----------------------------------------

def code_reads() -> set[str]:
    """ENV_DEFAULTS plus any other environment read in the package or the root entry points."""
    names = set(ENV_DEFAULTS)
    sources = [*ROOT.joinpath("ewallet_etl").rglob("*.py"), *ROOT.glob("*.py")]
    for path in sources:
        if not path.name.startswith("test_"):
            names |= set(ENV_READ.findall(path.read_text()))
    return names


def env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {name.strip(): value for name, value in pairs}


def test_env_example_documents_every_setting_the_code_reads() -> None:
    undocumented = code_reads() - set(TEST_ONLY) - set(ABOUT_THE_ENV_FILE) - set(env_example())
    assert not undocumented, f"read by the code, missing from .env.example: {sorted(undocumented)}"


def test_env_example_documents_only_what_something_reads() -> None:
    documented, read = set(env_example()), code_reads()
    assert not documented - read - set(NOT_READ_BY_CODE), "documented but read by nothing"
    assert not documented & set(TEST_ONLY), "a test-only hook must not be documented as a setting"
    assert not set(NOT_READ_BY_CODE) & read, "read by the code now: drop it from NOT_READ_BY_CODE"
    assert set(NOT_READ_BY_CODE) <= documented, "NOT_READ_BY_CODE names an undocumented variable"
    users = COMPOSE_FILE.read_text() + "".join(p.read_text() for p in ROOT.glob("docker/**/*.sh"))
    unused = [name for name in NOT_READ_BY_CODE if name not in users]
    assert not unused, f"neither compose nor docker/ uses {unused}"


def test_compose_interpolates_only_documented_variables() -> None:
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE_FILE.read_text()))
    assert used, "no ${VAR} found: the pattern is wrong"
    assert not used - set(env_example()), "interpolated in docker-compose.yml, not in .env.example"


@pytest.mark.parametrize("name", SECRETS)
def test_no_secret_value_in_compose_file(name: str) -> None:
    value = env_example()[name]
    assert value and value not in COMPOSE_FILE.read_text(), f"{name}'s value is in the compose file"


# --- docker-compose config -------------------------------------------------------------------

def _compose_exe() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        message = "docker-compose is not installed (scripts/stack.sh up installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return exe


def _compose(*args: str, env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess[str]:
    """docker-compose on our file, with a scrubbed environment: the shell beats the env file in
    interpolation, so a developer's exported MYSQL_PASSWORD must not change the result."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [_compose_exe(), "-f", str(COMPOSE_FILE), "--env-file", str(env_file), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def _yaml_to_json(text: str, compose_exe: str) -> Any:
    """Compose v1 is Python with PyYAML: its interpreter turns the YAML into JSON for us."""
    first = Path(compose_exe).read_bytes()[:200].split(b"\n", 1)[0].decode(errors="replace")
    assert first.startswith("#!") and "python" in first, f"not a Python docker-compose: {first!r}"
    code = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
    out = subprocess.run([*shlex.split(first[2:]), "-c", code], input=text, capture_output=True,
                         text=True, timeout=60, check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The resolved configuration (.env.example interpolated, paths absolute) as plain data."""
    version = subprocess.run([_compose_exe(), "version", "--short"], capture_output=True,
                             text=True, timeout=60).stdout.strip().lstrip("v")
    if version.split(".")[0].isdigit() and int(version.split(".")[0]) >= 2:
        proc = _compose("config", "--format", "json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)
    proc = _compose("config")
    assert proc.returncode == 0, proc.stderr
    return _yaml_to_json(proc.stdout, _compose_exe())


def test_compose_config_is_valid_without_warnings() -> None:
    """The CI check, exactly: `docker-compose -f docker-compose.yml --env-file .env.example
    config -q`. A warning such as 'variable is not set' fails it too."""
    proc = _compose("config", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "not set" not in proc.stderr and "WARN" not in proc.stderr.upper(), proc.stderr


def test_compose_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env_example().items()
                                if k != "MYSQL_ROOT_PASSWORD"))
    proc = _compose("config", "-q", env_file=env_file)
    assert proc.returncode != 0 and "MYSQL_ROOT_PASSWORD" in proc.stderr, proc.stderr


@pytest.mark.parametrize("service", APPS)
def test_app_service_gets_every_setting_and_nothing_else(config: dict, service: str) -> None:
    env = config["services"][service]["environment"]
    wanted = code_reads() - set(TEST_ONLY) - set(ABOUT_THE_ENV_FILE)
    assert not wanted - set(env), f"{service} does not pass {sorted(wanted - set(env))}"
    assert set(env) - wanted <= APP_EXTRAS[service], f"{service} passes {set(env) - wanted}"


@pytest.mark.parametrize("service", APPS)
def test_inside_compose_the_app_reaches_the_servers_by_service_name(
        config: dict, service: str) -> None:
    services = config["services"]
    env = {k: str(v) for k, v in services[service]["environment"].items() if v is not None}
    settings = Settings.from_env(env)  # raises ConfigError on anything the code would refuse
    mysql, ch = services["mysql_source"]["environment"], services["clickhouse"]["environment"]
    assert (settings.mysql_host, settings.mysql_port) == ("mysql_source", 3306)
    assert (settings.mysql_user, settings.mysql_password, settings.mysql_database) == (
        mysql["MYSQL_USER"], mysql["MYSQL_PASSWORD"], mysql["MYSQL_DATABASE"])
    target = settings.warehouse
    assert (target.kind, target.host, target.port, target.database) == (
        "clickhouse", "clickhouse", 9000, "analytics_dw")
    assert (target.user, target.password) == (ch["CLICKHOUSE_USER"], ch["CLICKHOUSE_PASSWORD"])


def _host_ip(port: Any) -> str:
    if isinstance(port, dict):  # compose v2: long syntax
        return str(port.get("host_ip", ""))
    parts = str(port).split(":")
    return parts[0] if len(parts) == 3 else ""


def test_every_published_port_is_bound_to_localhost(config: dict) -> None:
    ports = {name: svc.get("ports", []) for name, svc in config["services"].items()}
    assert ports["mysql_source"] and ports["clickhouse"]
    for name, published in ports.items():
        assert all(_host_ip(p) == "127.0.0.1" for p in published), (name, published)


@pytest.mark.parametrize("service", APPS)
def test_apps_wait_for_healthy_servers(config: dict, service: str) -> None:
    depends = config["services"][service]["depends_on"]
    assert {name: depends[name]["condition"] for name in SERVERS} == dict.fromkeys(
        SERVERS, "service_healthy")


@pytest.mark.parametrize("service, client, credential", [
    ("mysql_source", "mysql ", "MYSQL_PASSWORD"),  # handed over as MYSQL_PWD
    ("clickhouse", "clickhouse-client ", None),  # the client reads CLICKHOUSE_PASSWORD itself
])
def test_server_healthchecks_query_with_credentials(
        config: dict, service: str, client: str, credential: str | None) -> None:
    svc = config["services"][service]
    check = svc["healthcheck"]
    test = check["test"] if isinstance(check["test"], str) else " ".join(check["test"])
    assert not check.get("disable") and client in test and "SELECT" in test
    assert credential in test if credential else svc["environment"]["CLICKHOUSE_PASSWORD"]


def _mounts(service: dict) -> dict[str, str]:
    """target -> source of every volume, v1 short syntax or v2 long syntax."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume.get("source", "")
        else:
            source, target = str(volume).split(":")[:2]
            mounts[target] = source
    return mounts


@pytest.mark.parametrize("service, data_dir, init_files", [
    ("mysql_source", "/var/lib/mysql",
     ["DDL-MySQL-Source.sql", "docker/mysql-init/20-etl-grants.sh"]),
    ("clickhouse", "/var/lib/clickhouse", ["DDL-Clickhouse.sql"]),
])
def test_servers_initialise_themselves_on_a_named_volume(
        config: dict, service: str, data_dir: str, init_files: list[str]) -> None:
    mounts = _mounts(config["services"][service])
    assert mounts[data_dir] in config["volumes"], "data must live on a named volume"
    init = {Path(source).resolve(): target for target, source in mounts.items()
            if target.startswith("/docker-entrypoint-initdb.d/")}
    for name in init_files:
        assert (ROOT / name).is_file() and (ROOT / name).resolve() in init, name
        assert Path(init[(ROOT / name).resolve()]).suffix == Path(name).suffix, "runs by suffix"


def test_mysql_runs_with_the_binlog_settings_the_cdc_needs(config: dict) -> None:
    command = config["services"]["mysql_source"]["command"]
    flags = set(shlex.split(command) if isinstance(command, str) else command)
    assert {"--binlog-format=ROW", "--binlog-row-image=FULL", "--binlog-row-metadata=FULL",
            "--default-time-zone=+00:00"} <= flags
    assert any(re.fullmatch(r"--server-id=[1-9]\d*", flag) for flag in flags)


# --- scripts and the build context -------------------------------------------------------------

def _dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keep, pattern = line.startswith("!"), line.lstrip("!").strip("/")
        regex = "".join(
            "(.*/)?" if tok == "**/" else ".*" if tok == "**" else "[^/]*" if tok == "*"
            else "[^/]" if tok == "?" else re.escape(tok)
            for tok in re.findall(r"\*\*/|\*\*|\*|\?|[^*?]+", pattern))
        rules.append((keep, re.compile(regex)))
    return rules


def in_build_context(path: str) -> bool:
    """Docker's rule, enough for our allow-list: the last pattern matching the path or one of its
    parent folders decides; `!` re-includes."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    included = True
    for keep, regex in _dockerignore():
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            included = keep
    return included


def test_build_context_holds_what_runs_and_no_secret_or_local_state() -> None:
    needed = ["requirements.txt", "docker/etl-loop.sh",
              "etl_pipeline.py", "cdc-stream.py", "DDL-Clickhouse.sql",
              *(p.relative_to(ROOT).as_posix() for p in ROOT.glob("ewallet_etl/**/*.py"))]
    assert [p for p in needed if not in_build_context(p)] == []
    kept_out = [".env", ".venv/bin/python", ".git/HEAD", ".local/chdb/data",
                "tests/conftest.py", "ewallet_etl/__pycache__/config.cpython-311.pyc"]
    assert [p for p in kept_out if in_build_context(p)] == []


def _scripts(command: list[str]) -> list[str]:
    """The repository files a command runs (its arguments that name a .py or .sh file)."""
    return [arg for arg in command if arg.endswith((".py", ".sh"))]


def _check_scripts(scripts: list[str]) -> None:
    assert scripts, "the command runs no script from the repository"
    for script in scripts:
        assert (ROOT / script).is_file(), f"{script} is not in the repository"
        assert in_build_context(script), f"{script} is left out by .dockerignore"


def test_each_app_image_is_built_once_and_never_pulled(config: dict) -> None:
    services = config["services"]
    built = {name: svc["build"].get("target", "") for name, svc in services.items()
             if "build" in svc}
    assert built == {"etl_service": "", "dagster_webserver": "dagster"}, built
    for name in built:
        assert services[name]["build"]["context"] in (str(ROOT), ".")
    # the services of the cdc and mongodb profiles run the image the default service builds
    for user, builder in (("cdc_service", "dagster_webserver"),
                          ("mongo_etl_service", "dagster_webserver"),
                          ("dagster_daemon", "dagster_webserver")):
        assert services[user]["image"] == services[builder]["image"], user
        assert services[user].get("pull_policy") == "never", "a local image: never pulled"


def test_dagster_replaces_the_loop_by_default_and_keeps_its_state(config: dict) -> None:
    services = config["services"]
    assert "profiles" not in services["dagster_webserver"]
    assert services["etl_service"].get("profiles") == ["loop"]
    for name in ("dagster_webserver", "dagster_daemon"):
        svc = services[name]
        assert _mounts(svc)["/opt/dagster/home"] in config["volumes"]
        assert svc["environment"]["DAGSTER_HOME"] == "/opt/dagster/home"
        env = {k: str(v) for k, v in svc["environment"].items()
               if v is not None and k != "DAGSTER_HOME"}
        assert Settings.from_env(env).warehouse.host == "clickhouse"
    check = services["dagster_webserver"]["healthcheck"]["test"]
    assert "server_info" in " ".join(check)
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM \S+(?: AS (\S+))?", text, re.M)
    assert "dagster" in stages and stages[-1] == "", "the plain image stays the default target"


def test_dagster_services_share_the_instance_settings_and_the_daemon_is_healthchecked(
        config: dict) -> None:
    services = config["services"]
    settings = ROOT / "ewallet_etl" / "orchestration" / "dagster.yaml"
    for name in ("dagster_webserver", "dagster_daemon"):
        mounted = _mounts(services[name])["/opt/dagster/home/dagster.yaml"]
        assert Path(mounted).resolve() == settings.resolve(), name
        assert in_build_context("ewallet_etl/orchestration/dagster.yaml")
    check = services["dagster_daemon"]["healthcheck"]
    assert not check.get("disable")
    assert check["test"][1:] == ["dagster-daemon", "liveness-check"], check["test"]
    # the command exists in the pinned Dagster (the image's builder-dagster stage pins it)
    daemon = ROOT / ".venv" / "bin" / "dagster-daemon"
    if daemon.exists():
        proc = subprocess.run([str(daemon), "liveness-check", "--help"], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0 and "heartbeat" in proc.stdout, proc.stderr[-500:]


@pytest.mark.parametrize("service", SERVERS)
def test_server_images_are_pinned_to_a_patch_release(config: dict, service: str) -> None:
    image = config["services"][service]["image"]
    tag = image.split("@")[0].rsplit(":", 1)[-1]
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.\d+)?", tag), f"{image}: pin a full version"


@pytest.mark.parametrize("service", APPS)
def test_apps_stop_on_a_configuration_error_instead_of_restarting_forever(
        config: dict, service: str) -> None:
    policy = str(config["services"][service].get("restart", "no"))
    assert policy.startswith("on-failure:") and int(policy.split(":")[1]) <= 5, policy


@pytest.mark.parametrize("service", [*SERVERS, *APPS])
def test_no_secret_in_a_url_or_a_healthcheck_command_line(config: dict, service: str) -> None:
    svc = config["services"][service]
    secrets = [env_example()[name] for name in SECRETS]
    urls = [str(v) for v in svc.get("environment", {}).values() if "://" in str(v)]
    assert not [u for u in urls if any(s in u for s in secrets)], urls
    check = svc.get("healthcheck", {}).get("test", "")
    command = check if isinstance(check, str) else " ".join(check)
    assert "--password" not in command and not any(s in command for s in secrets), command


@pytest.mark.parametrize("service", APPS)
def test_service_command_runs_scripts_in_the_repository(config: dict, service: str) -> None:
    svc = config["services"][service]
    command = svc["command"] if isinstance(svc["command"], list) else shlex.split(svc["command"])
    _check_scripts(_scripts(command))
    if "cdc-stream.py" in command:
        help_text = subprocess.run([sys.executable, "cdc-stream.py", "--help"], cwd=ROOT,
                                   capture_output=True, text=True, timeout=120).stdout
        flags = command[command.index("cdc-stream.py") + 1:]
        missing = [flag for flag in flags if flag not in help_text]
        assert not missing, f"cdc-stream.py --help does not mention {missing}"


def test_dockerfile_pins_base_runs_as_non_root_and_caches_requirements() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"python:3\.11\.\d+-slim-bookworm", text), "pin the base to a full version"
    assert re.search(r"^COPY --from=builder\S* /opt/venv", text, re.M), "multi-stage: the venv"
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0"), "run as a non-root user"
    requirements = text.index("COPY requirements.txt")
    code = re.search(r"^COPY \. ", text, re.M)
    assert code and requirements < code.start(), "requirements before code, for the layer cache"
    command = json.loads(re.findall(r"^CMD\s+(\[.*\])", text, re.M)[-1])
    _check_scripts(_scripts(command))


# --- docker/etl-loop.sh ---------------------------------------------------------------------

@pytest.fixture
def fake_python(tmp_path: Path) -> dict[str, str]:
    """An environment whose `python` records its arguments, sleeps FAKE_SLEEP, exits FAKE_RC."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python"
    fake.write_text('#!/bin/sh\necho "$*" >> "$CALLS"\nsleep "${FAKE_SLEEP:-0}"\n'
                    'exit "${FAKE_RC:-0}"\n')
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "CALLS": str(tmp_path / "calls")}


def _calls(env: dict[str, str]) -> list[str]:
    path = Path(env["CALLS"])
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("interval, run_rc, loop_rc, runs", [
    ("0", "0", 0, 1),      # once: the run's exit code ...
    ("0", "3", 3, 1),      # ... whatever it is
    ("1", "2", 2, 1),      # a configuration error ends the loop
    ("1x", "0", 2, 0),     # a bad interval is a configuration error, no run
])
def test_loop_exit_codes(fake_python: dict, tmp_path: Path, interval: str, run_rc: str,
                         loop_rc: int, runs: int) -> None:
    env = {**fake_python, "ETL_INTERVAL_SECONDS": interval, "FAKE_RC": run_rc}
    proc = subprocess.run(["sh", str(LOOP)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == loop_rc, proc.stderr
    assert _calls(env) == ["etl_pipeline.py"] * runs


def test_loop_runs_the_command_it_is_given_again_after_a_failure(fake_python: dict,
                                                                   tmp_path: Path) -> None:
    env = {**fake_python, "ETL_INTERVAL_SECONDS": "0", "FAKE_RC": "1"}
    command = ["sh", str(LOOP), "python", "cdc-stream.py", "--source", "binlog", "--follow"]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 1 and _calls(env) == ["cdc-stream.py --source binlog --follow"]


@pytest.mark.parametrize("fake_sleep", ["0", "30"])  # stopped while sleeping / during a run
def test_loop_goes_on_after_a_failed_run_and_stops_on_sigterm(
        fake_python: dict, tmp_path: Path, fake_sleep: str) -> None:
    env = {**fake_python, "ETL_INTERVAL_SECONDS": "1", "FAKE_RC": "1", "FAKE_SLEEP": fake_sleep}
    wanted_runs = 2 if fake_sleep == "0" else 1
    with subprocess.Popen(["sh", str(LOOP)], cwd=tmp_path, env=env,
                          stderr=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + 15
        while len(_calls(env)) < wanted_runs and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_calls(env)) >= wanted_runs, "the loop did not run again after a failure"
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert proc.wait(timeout=10) == 143
        assert time.monotonic() - started < 5, "SIGTERM must not wait for the run or the sleep"


# --- the MongoDB source in compose (issue 16) --------------------------------------------------

MONGO_SERVICES = ("mongodb", "mongodb_seed", "mongo_etl_service")


def test_mongodb_is_part_of_the_default_stack(config: dict) -> None:
    """`docker compose up` loads MongoDB's documents into the same star schema: its server, its
    seed and its loop start without a profile (the MySQL services do not depend on them)."""
    services = config["services"]
    for name in MONGO_SERVICES:
        assert "profiles" not in services[name], name
    for name in ("mysql_source", "clickhouse", "dagster_webserver", "dagster_daemon"):
        assert not set(services[name].get("depends_on", {})) & set(MONGO_SERVICES), name


def test_mongodb_healthcheck_initiates_and_waits_for_a_writable_primary(config: dict) -> None:
    """rs.status() answers (exit 0) before the set has a primary: healthy must mean writable."""
    svc = config["services"]["mongodb"]
    check = svc["healthcheck"]["test"]
    script = check if isinstance(check, str) else " ".join(check)
    assert "rs.initiate(" in script and "host: 'mongodb:27017'" in script
    assert "quit(db.hello().isWritablePrimary ? 0 : 1)" in script
    assert "--replSet rs0" in " ".join(svc["command"])
    env = {k: str(v) for k, v in services_env(config, "mongo_etl_service").items()}
    url = Settings.from_env(env).mongodb_url
    assert url.startswith("mongodb://mongodb:27017/") and "replicaSet=rs0" in url


def services_env(config: dict, name: str) -> dict[str, Any]:
    return {k: v for k, v in config["services"][name]["environment"].items() if v is not None}


def test_the_demo_seed_is_a_one_shot_service_the_mongodb_loop_waits_for(config: dict) -> None:
    services = config["services"]
    seed = services["mongodb_seed"]
    command = seed["command"] if isinstance(seed["command"], list) else shlex.split(
        seed["command"])
    assert command[:2] == ["python", "seed/mongodb_seed.py"] and "--reset" not in command
    assert (ROOT / command[1]).is_file() and in_build_context(command[1])
    assert seed["depends_on"]["mongodb"]["condition"] == "service_healthy"
    assert str(seed.get("restart", "no")) == "no", "one shot: it ends, and stays ended"
    assert seed["image"] == services["dagster_webserver"]["image"]
    assert seed.get("pull_policy") == "never"
    assert Settings.from_env({k: str(v) for k, v in services_env(config, "mongodb_seed").items()}
                             ).mongodb_url.startswith("mongodb://mongodb:27017/")
    loop = services["mongo_etl_service"]["depends_on"]
    assert loop["mongodb_seed"]["condition"] == "service_completed_successfully"
    assert loop["mongodb"]["condition"] == "service_healthy"
    assert {name: loop[name]["condition"] for name in SERVERS} == dict.fromkeys(
        SERVERS, "service_healthy")
