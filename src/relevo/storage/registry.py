"""Open a backend from a URL: ``memory://``, ``sqlite:///path``, ``redis://host:port/db``.

``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db`` follow SQLAlchemy's
convention. Redis URLs take ``?prefix=`` (default ``relevo:``) to namespace keys. Any
other scheme is an error: a typo must not silently fall back to memory.
"""

from __future__ import annotations

from typing import Callable
from urllib.parse import parse_qs, urlsplit, urlunsplit

from relevo.errors import ConfigError
from relevo.storage import memory, sqlite
from relevo.storage.protocols import DecisionLog, EventLog, FeatureStore, ModelStore

KINDS = ("event_log", "feature_store", "decision_log", "model_store")

_MEMORY: dict[str, Callable] = {
    "event_log": memory.MemoryEventLog,
    "feature_store": memory.MemoryFeatureStore,
    "decision_log": memory.MemoryDecisionLog,
    "model_store": memory.MemoryModelStore,
}
_SQLITE: dict[str, Callable] = {
    "event_log": sqlite.SqliteEventLog,
    "feature_store": sqlite.SqliteFeatureStore,
    "decision_log": sqlite.SqliteDecisionLog,
    "model_store": sqlite.SqliteModelStore,
}


def sqlite_path(url: str) -> str:
    path = url[len("sqlite:///") :]
    if not path:
        raise ConfigError(f"sqlite URL {url!r} names no file", field="url")
    return path


def _open_redis(kind: str, url: str):
    import redis as redis_lib

    from relevo.storage import redis as backend

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    prefix = query.pop("prefix", ["relevo:"])[0]
    if query:
        raise ConfigError(f"unknown redis URL options {sorted(query)} in {url!r}", field="url")
    client = redis_lib.Redis.from_url(urlunsplit(parts._replace(query="")), socket_timeout=10)
    cls = {
        "event_log": backend.RedisEventLog,
        "feature_store": backend.RedisFeatureStore,
        "decision_log": backend.RedisDecisionLog,
        "model_store": backend.RedisModelStore,
    }[kind]
    return cls(client, prefix=prefix)


def open_store(kind: str, url: str, *, sqlite_synchronous: str = "NORMAL"):
    """Open the ``kind`` store (one of :data:`KINDS`) named by ``url``."""
    if kind not in KINDS:
        raise ConfigError(f"unknown store kind {kind!r}; expected one of {KINDS}")
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "memory":
        return _MEMORY[kind]()
    if scheme == "sqlite":
        if not url.startswith("sqlite:///"):
            raise ConfigError(f"sqlite URLs look like sqlite:///path/file.db, got {url!r}", field="url")
        return _SQLITE[kind](sqlite_path(url), sqlite_synchronous)
    if scheme in ("redis", "rediss"):
        return _open_redis(kind, url)
    raise ConfigError(
        f"unknown storage URL scheme {scheme or url!r} for {kind}: "
        "use memory://, sqlite:///path or redis://host:port/db",
        field="url",
    )


def open_event_log(url: str, **kw) -> EventLog:
    return open_store("event_log", url, **kw)


def open_feature_store(url: str, **kw) -> FeatureStore:
    return open_store("feature_store", url, **kw)


def open_decision_log(url: str, **kw) -> DecisionLog:
    return open_store("decision_log", url, **kw)


def open_model_store(url: str, **kw) -> ModelStore:
    return open_store("model_store", url, **kw)
