"""Backends are chosen by URL; an unknown scheme is an error, never a silent default."""

from __future__ import annotations

import pytest

from relevo.errors import ConfigError
from relevo.storage.memory import MemoryFeatureStore
from relevo.storage.registry import open_store
from relevo.storage.sqlite import SqliteEventLog


@pytest.mark.parametrize(
    "url, message",
    [
        ("postgres://localhost/db", "unknown storage URL scheme 'postgres'"),
        ("memroy://", "unknown storage URL scheme 'memroy'"),
        ("/tmp/file.db", "unknown storage URL scheme"),
        ("sqlite://relative.db", "sqlite URLs look like sqlite:///path"),
        ("sqlite:///", "names no file"),
        ("redis://127.0.0.1:6379/0?pefix=x", "unknown redis URL option .pefix."),
            ("redis://127.0.0.1:6379/0?partitions=many", "partitions=.many. is not a int"),
            ("redis+cluster://127.0.0.1:7000/3", "only database 0"),
    ],
)
def test_bad_urls_are_errors(url, message):
    with pytest.raises(ConfigError, match=message):
        open_store("feature_store", url)


def test_unknown_kind():
    with pytest.raises(ConfigError, match="unknown store kind"):
        open_store("cache", "memory://")


def test_schemes_open_their_backend(tmp_path):
    assert isinstance(open_store("feature_store", "memory://"), MemoryFeatureStore)
    log = open_store("event_log", f"sqlite:///{tmp_path}/e.db")
    assert isinstance(log, SqliteEventLog) and (tmp_path / "e.db").exists()
    log.close()
