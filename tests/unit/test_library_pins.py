"""Two modules override a library's internals for a measured gain (the binlog row decoder and
the Arrow -> Native insert encoder). They were written against one release each: a different
release installed must fail here, loudly, before it misbehaves in production."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import pytest
from clickhouse_driver import Client
from pymysqlreplication.row_event import RowsEvent, TableMapEvent

from ewallet_etl.sources import binlog_decode
from ewallet_etl.warehouse import native


@pytest.mark.parametrize("module", [binlog_decode, native], ids=lambda m: m.__name__)
def test_the_installed_library_is_the_release_the_override_was_written_for(module):
    package, release = module.WRITTEN_FOR
    assert version(package) == release, (
        f"{module.__name__} overrides {package} {release} internals; {version(package)} is "
        f"installed: check the overridden code against it, then update WRITTEN_FOR")


def test_the_overridden_internals_are_still_there():
    assert callable(RowsEvent._fetch_rows) and callable(TableMapEvent.__init__)
    params = list(inspect.signature(Client.send_data).parameters)
    assert params[:3] == ["self", "sample_block", "data"]
    assert {"types_check", "columnar"} <= set(params)
