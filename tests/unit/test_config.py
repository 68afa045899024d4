"""Configuration as people write it: the environment over a .env file over the defaults,
NAME_FILE secrets, a MYSQL_URL, TLS in the ClickHouse URL, and every refused value refused in
one line that never quotes a secret."""

from __future__ import annotations

import pytest

from ewallet_etl.config import ConfigError, Settings, layered_environment


def settings(**env: str) -> Settings:
    return Settings.from_env(env)


def refused(**env: str) -> str:
    with pytest.raises(ConfigError) as info:
        settings(**env)
    return str(info.value)


def test_defaults_are_the_local_stack():
    s = settings()
    assert (s.mysql_host, s.mysql_port, s.mysql_database) == ("127.0.0.1", 13306, "ewallet_source")
    assert s.warehouse.kind == "chdb" and s.log_level == "INFO"


def test_the_process_environment_wins_over_a_dotenv_file_which_wins_over_defaults(
        tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("# local settings\nMYSQL_HOST=db.local\n"
                                   "export MYSQL_PORT=3307\nMYSQL_USER='quoted user'\n")
    monkeypatch.chdir(tmp_path)
    layered = layered_environment({"MYSQL_PORT": "3308"})
    s = Settings.from_env(layered)
    assert (s.mysql_host, s.mysql_port, s.mysql_user) == ("db.local", 3308, "quoted user")
    named = tmp_path / "other.env"
    named.write_text("MYSQL_HOST=elsewhere\n")
    assert layered_environment({"ETL_ENV_FILE": str(named)})["MYSQL_HOST"] == "elsewhere"
    with pytest.raises(ConfigError, match="ETL_ENV_FILE names no file"):
        layered_environment({"ETL_ENV_FILE": str(tmp_path / "missing.env")})
    (tmp_path / ".env").write_text("not a setting\n")
    with pytest.raises(ConfigError, match=r"\.env line 1 is not NAME=VALUE"):
        layered_environment({})


def test_a_secret_can_come_from_a_file(tmp_path):
    secret = tmp_path / "mysql_password"
    secret.write_text("s3cr3t/with:chars\n")
    assert settings(MYSQL_PASSWORD_FILE=str(secret)).mysql_password == "s3cr3t/with:chars"
    url = tmp_path / "clickhouse_url"
    url.write_text("clickhouse://etl:p%40ss@ch:9000/dw")
    assert settings(CLICKHOUSE_URL_FILE=str(url)).warehouse.password == "p@ss"
    assert "keep one" in refused(MYSQL_PASSWORD="x", MYSQL_PASSWORD_FILE=str(secret))
    assert "cannot read" in refused(MYSQL_PASSWORD_FILE=str(tmp_path / "nope"))


def test_the_clickhouse_password_may_come_apart_from_its_url(tmp_path):
    secret = tmp_path / "clickhouse_password"
    secret.write_text("any/char@s:ok\n")  # no percent-encoding outside a URL
    target = settings(CLICKHOUSE_URL="clickhouse://etl@ch:9000/dw",
                      CLICKHOUSE_PASSWORD_FILE=str(secret)).warehouse
    assert (target.user, target.password) == ("etl", "any/char@s:ok")
    assert "any/char" not in repr(target) and "any/char" not in target.describe()
    same = settings(CLICKHOUSE_URL="clickhouse://etl:pw@ch/dw", CLICKHOUSE_PASSWORD="pw")
    assert same.warehouse.password == "pw"
    message = refused(CLICKHOUSE_URL="clickhouse://etl:Xq7pw@ch/dw", CLICKHOUSE_PASSWORD="Zr9pw")
    assert "keep one" in message and "Xq7" not in message and "Zr9" not in message
    # chDB has no password: one in the environment (compose's .env) changes nothing
    assert settings(CLICKHOUSE_PASSWORD="x").warehouse.kind == "chdb"


def test_a_mysql_url_gives_the_five_values_and_a_separate_variable_wins():
    s = settings(MYSQL_URL="mysql://shop:p%2Fw@db.example:3307/shop_prod")
    assert (s.mysql_user, s.mysql_password, s.mysql_host, s.mysql_port, s.mysql_database) == (
        "shop", "p/w", "db.example", 3307, "shop_prod")
    assert settings(MYSQL_URL="mysql://shop:pw@db.example:3307/shop_prod",
                    MYSQL_DATABASE="other").mysql_database == "other"
    assert "must start with mysql://" in refused(MYSQL_URL="postgres://x@y/z")


@pytest.mark.parametrize("url, secure, port", [
    ("clickhouse://etl:pw@ch:9000/dw", False, 9000),
    ("clickhouse+tls://etl:pw@ch/dw", True, 9440),
    ("clickhouse://etl:pw@ch/dw?secure=true", True, 9440),
    ("clickhouse://etl:pw@ch:9000/dw?secure=false", False, 9000),
])
def test_tls_in_the_clickhouse_url_is_honoured(url, secure, port):
    target = settings(CLICKHOUSE_URL=url).warehouse
    assert (target.secure, target.port) == (secure, port)
    assert target.describe().startswith("clickhouse+tls://" if secure else "clickhouse://")


@pytest.mark.parametrize("env, message", [
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ({"ETL_CHUNK_ROWS": "4294967296"}, "ETL_CHUNK_ROWS must be between 1 and 10000000"),
    ({"ETL_CHUNK_ROWS": "0"}, "ETL_CHUNK_ROWS must be between 1 and 10000000"),
    ({"ETL_OVERLAP_SECONDS": "1" + "0" * 20}, "ETL_OVERLAP_SECONDS must be between 0 and"),
    ({"ETL_LAG_SECONDS": "-1"}, "ETL_LAG_SECONDS must be between 0 and"),
    ({"ETL_MAX_RETRIES": "many"}, "ETL_MAX_RETRIES must be an integer"),
    ({"MYSQL_PORT": "70000"}, "MYSQL_PORT must be between 1 and 65535"),
    ({"CLICKHOUSE_URL": "clickhouse://etl:pw@ch/dw?secure=maybe"}, "secure must be true or false"),
    ({"CLICKHOUSE_URL": "clickhouse://etl:pw@ch/dw?compress=1"}, "unknown ?option (only ?secure"),
    ({"CLICKHOUSE_URL": "postgres://x"}, "must start with clickhouse://"),
])
def test_values_out_of_range_or_unknown_are_refused(env, message):
    assert message in refused(**env)


@pytest.mark.parametrize("url", [
    "clickhouse://etl:pa/ss9@ch:9000/dw",     # the / ends the host part early: a cut password
    "clickhouse://etl:secret/dw@ch:9000/dw",
])
def test_a_url_with_an_unencoded_password_is_refused_without_echoing_it(url):
    message = refused(CLICKHOUSE_URL=url)
    assert "percent-encoded" in message
    for fragment in ("pa/ss9", "ss9", "se@cret", "cret", "secret"):
        assert fragment not in message


def test_an_error_is_shown_whole_on_one_line_without_the_server_stack():
    from ewallet_etl.core.errors import one_line

    error = RuntimeError("Code: 193.\nDB::Exception: Wrong password for user etl.\n"
                         "Stack trace:\n0. /usr/lib/libclickhouse.so(StackTrace)")
    assert one_line(error) == "Code: 193. DB::Exception: Wrong password for user etl."
    assert one_line(RuntimeError("")) == "RuntimeError"
    assert one_line(RuntimeError("x" * 700)).endswith(" [...]")


def test_the_star_schema_feed_is_on_unless_switched_off():
    assert settings().cdc_star_schema is True
    assert settings(CDC_STAR_SCHEMA="false").cdc_star_schema is False
    assert "CDC_STAR_SCHEMA must be true or false" in refused(CDC_STAR_SCHEMA="maybe")


# --- audit of issue 14: every refused value, and no fragment of a secret in any message -------

SECRET = "SeCrEt"


@pytest.mark.parametrize("env", [
    {"CLICKHOUSE_URL": f"clickhouse://etl:12?{SECRET}@127.0.0.1:19000/analytics_dw"},
    {"CLICKHOUSE_URL": f"clickhouse://etl:12#{SECRET}@127.0.0.1:19000/analytics_dw"},
    {"CLICKHOUSE_URL": f"clickhouse://etl:pw@ch/dw?{SECRET}=1"},
    {"MYSQL_URL": f"mysql://etl:99#{SECRET}@127.0.0.1:13306/ewallet_source"},
    {"MYSQL_URL": f"mysql://etl:99?{SECRET}@127.0.0.1:13306/ewallet_source"},
    {"MYSQL_URL": f"mysql://etl:pa/{SECRET}@127.0.0.1:13306/ewallet_source"},
    {"MYSQL_URL": f"mysql://etl:{SECRET}@db:3306/shop?ssl=true"},
    {"MYSQL_URL": f"mysql://etl:{SECRET}@db:99999/shop"},
    {"MONGODB_URL": f"http://etl:{SECRET}@mongo/"},
])
def test_a_url_a_secret_sits_in_is_refused_without_any_part_of_it(env):
    message = refused(**env)
    assert "percent-encoded" in message or "must start with" in message or "option" in message
    for fragment in (SECRET, SECRET[:3], SECRET[-3:], "99", "12"):
        assert fragment not in message, (fragment, message)


def test_mysql_url_options_are_refused_not_ignored():
    assert "MYSQL_URL takes no ?options" in refused(MYSQL_URL="mysql://etl:pw@db/shop?ssl=true")


@pytest.mark.parametrize("env, message", [
    ({"ETL_PIPELINE_NAME": ""}, "ETL_PIPELINE_NAME must not be empty"),
    ({"ETL_PIPELINE_NAME": "x" * 101}, "ETL_PIPELINE_NAME must be at most 100 characters"),
    ({"MYSQL_HOST": ""}, "MYSQL_HOST must not be empty"),
    ({"MYSQL_HOST": "  "}, "MYSQL_HOST must not be empty"),
    ({"MYSQL_USER": ""}, "MYSQL_USER must not be empty"),
    ({"CDC_STREAM_NAME": ""}, "CDC_STREAM_NAME must not be empty"),
    ({"CDC_STREAM_NAME": "a\nb"}, "CDC_STREAM_NAME must be printable"),
    ({"MYSQL_DATABASE": "shop-prod"}, "is not a valid database name"),
    ({"CDC_SERVER_ID": "-1"}, "CDC_SERVER_ID must be between 0 and 4294967295"),
    ({"CDC_SERVER_ID": str(2**32)}, "CDC_SERVER_ID must be between 0 and 4294967295"),
    ({"CDC_BATCH_EVENTS": "0"}, "CDC_BATCH_EVENTS must be between 1 and"),
    ({"CDC_BATCH_MS": "soon"}, "CDC_BATCH_MS must be an integer"),
    ({"CDC_BATCH_MS": "3600001"}, "CDC_BATCH_MS must be between 1 and 3600000"),
    ({"CDC_STAR_SCHEMA": ""}, "CDC_STAR_SCHEMA must be true or false"),
    ({"ETL_MAX_LAG_SECONDS": "0"}, "ETL_MAX_LAG_SECONDS must be between 1 and"),
    ({"MONGODB_URL": "127.0.0.1:37017"}, "MONGODB_URL must start with mongodb://"),
    ({"MONGODB_DATABASE": ""}, "MONGODB_DATABASE must be a plain name"),
    ({"MONGODB_DATABASE": "a.b"}, "MONGODB_DATABASE must be a plain name"),
    ({"MONGODB_COLLECTION": "x" * 121}, "MONGODB_COLLECTION must be a plain name"),
    ({"MONGODB_COLLECTION": "$cmd"}, "MONGODB_COLLECTION must be a plain name"),
    ({"MYSQL_URL": "mysql://etl:pw@db:0/shop"}, "MYSQL_PORT must be between 1 and 65535"),
    ({"CLICKHOUSE_URL": "chdb://"}, "chdb://PATH needs a PATH"),
])
def test_every_other_setting_refuses_what_it_cannot_use(env, message):
    assert message in refused(**env)


def test_the_chdb_default_is_a_per_user_data_folder_not_the_working_folder(tmp_path):
    home = settings(HOME=str(tmp_path)).warehouse
    assert (home.kind, home.path) == ("chdb", f"{tmp_path}/.local/share/ewallet-etl/chdb")
    xdg = settings(HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / "data")).warehouse
    assert xdg.path == f"{tmp_path}/data/ewallet-etl/chdb"
    # the XDG spec: a relative XDG_DATA_HOME is invalid and ignored
    assert settings(HOME=str(tmp_path), XDG_DATA_HOME="rel").warehouse.path == home.path
    assert settings(CLICKHOUSE_URL="chdb://.local/chdb").warehouse.path == ".local/chdb"


def test_the_env_example_describes_quotes_as_read_dotenv_reads_them(tmp_path):
    from ewallet_etl.config import read_dotenv
    from tests.helpers import ROOT

    text = (ROOT / ".env.example").read_text()
    assert "no quotes" not in text and "surrounding quotes are removed" in text
    (tmp_path / ".env").write_text("A='x y'\nB=\"z\"\nC=it's\n")
    assert read_dotenv(tmp_path / ".env") == {"A": "x y", "B": "z", "C": "it's"}
