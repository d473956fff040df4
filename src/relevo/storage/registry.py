"""Open a backend from a URL: ``memory://``, ``sqlite:///path``, ``redis://host:port/db``,
``redis+cluster://host:port`` (any node of a Redis Cluster; the others are discovered).

``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db`` follow SQLAlchemy's
convention. Redis URLs take options (``?prefix=relevo:&partitions=8``; the list is in
:mod:`relevo.storage.redis`). Any other scheme or option is an error: a typo must not
silently fall back to a default.
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


# option -> (type, stores that take it)
_REDIS_OPTIONS: dict[str, tuple[type, tuple[str, ...]]] = {
    "prefix": (str, KINDS),
    "partitions": (int, KINDS),
    "dedup_ttl_s": (int, ("event_log",)),
    "retention_s": (float, ("event_log",)),
    "max_backlog": (int, ("event_log",)),
    "lease_ms": (int, ("event_log",)),
    "min_replicas": (int, ("event_log",)),
    "replica_wait_ms": (int, ("event_log",)),
    "socket_timeout": (float, ()),
}


def redis_client(url: str, socket_timeout: float = 5.0):
    """A client for ``redis://`` / ``rediss://`` (one server) or ``redis+cluster://`` (a
    cluster, reached through any of its nodes). Options in the URL are not passed on."""
    import redis as redis_lib
    from redis.cluster import RedisCluster

    parts = urlsplit(url)
    if parts.scheme == "redis+cluster":
        if parts.path not in ("", "/", "/0"):
            raise ConfigError(f"a Redis Cluster has only database 0, got {url!r}", field="url")
        return RedisCluster.from_url(urlunsplit(parts._replace(scheme="redis", path="", query="")),
                                     socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)
    return redis_lib.Redis.from_url(urlunsplit(parts._replace(query="")), socket_timeout=socket_timeout,
                                    socket_connect_timeout=socket_timeout)


def _open_redis(kind: str, url: str):
    from relevo.storage import redis as backend

    options: dict = {}
    for name, values in parse_qs(urlsplit(url).query).items():
        if name not in _REDIS_OPTIONS:
            raise ConfigError(f"unknown redis URL option {name!r} in {url!r}; known: {sorted(_REDIS_OPTIONS)}",
                              field="url")
        cast, kinds = _REDIS_OPTIONS[name]
        try:
            value = cast(values[-1])
        except ValueError:
            raise ConfigError(f"redis URL option {name}={values[-1]!r} is not a {cast.__name__}", field="url") from None
        if kind in kinds:
            options[name] = value
    client = redis_client(url, float(parse_qs(urlsplit(url).query).get("socket_timeout", ["5"])[-1]))
    cls = {
        "event_log": backend.RedisEventLog,
        "feature_store": backend.RedisFeatureStore,
        "decision_log": backend.RedisDecisionLog,
        "model_store": backend.RedisModelStore,
    }[kind]
    return cls(client, **options)


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
    if scheme in ("redis", "rediss", "redis+cluster"):
        return _open_redis(kind, url)
    raise ConfigError(
        f"unknown storage URL scheme {scheme or url!r} for {kind}: "
        "use memory://, sqlite:///path, redis://host:port/db or redis+cluster://host:port",
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
