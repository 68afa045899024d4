"""`ewallet-etl --help` names the MongoDB source's settings with the others it reads."""

from __future__ import annotations

from ewallet_etl import command


def test_help_names_the_mongodb_variables(capsys):
    try:
        command.main(["--help"])
    except SystemExit as exc:
        assert not exc.code
    text = " ".join(capsys.readouterr().out.split())
    for name in ("MONGODB_URL", "MONGODB_DATABASE", "MONGODB_COLLECTION", "MYSQL_HOST"):
        assert name in text, name
