"""Every storage conformance suite runs against memory, SQLite, Redis and a 3-master
Redis Cluster (started by the tests, see tests/redis_procs.py).

``reopen()`` closes and opens the store again on the same data, as a restart would
(for memory it only forgets in-flight deliveries, since memory keeps nothing).
"""

from __future__ import annotations

import pytest

from relevo.storage.registry import open_store

BACKENDS = ["memory", "sqlite", "redis", "redis-cluster"]


class Opened:
    def __init__(self, kind: str, url: str):
        self.kind, self.url = kind, url
        self.store = open_store(kind, url)

    def reopen(self):
        if self.url.startswith("memory"):
            if self.kind == "event_log":
                self.store.reset_delivery("g")
            return self.store
        self.store.close()
        self.store = open_store(self.kind, self.url)
        return self.store


def _url(request, backend: str, tmp_path) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    prefix = request.getfixturevalue("redis_prefix")
    if backend == "redis-cluster":
        return f"{request.getfixturevalue('redis_cluster').url}?prefix={prefix}"
    return f"{request.getfixturevalue('redis_server')}?prefix={prefix}"


@pytest.fixture(params=BACKENDS)
def backend_url(request, tmp_path):
    return _url(request, request.param, tmp_path)


@pytest.fixture(params=["sqlite", "redis", "redis-cluster"])
def durable_url(request, tmp_path):
    """The backends that promise durability (memory:// is documented as volatile)."""
    return _url(request, request.param, tmp_path)


def opened(kind: str, url: str):
    holder = Opened(kind, url)
    yield holder
    holder.store.close()


@pytest.fixture
def event_log(backend_url):
    yield from opened("event_log", backend_url)


@pytest.fixture
def feature_store(backend_url):
    yield from opened("feature_store", backend_url)


@pytest.fixture
def decision_log(backend_url):
    yield from opened("decision_log", backend_url)


@pytest.fixture
def model_store(backend_url):
    yield from opened("model_store", backend_url)
