"""Tenants: one deployment serving several customers whose data never meets.

An API key may name a ``tenant``. Every request made with it is served by that tenant's
own Engine: its own stores (SQLite files under ``<home>/tenants/<tenant>/``; on Redis the
key prefix gains ``t:<tenant>:``; ``memory://`` stores are per engine anyway), its own
vector index, catalog, bandit posteriors, experiments and decision log. Nothing is shared
but the (stateless) text encoder. Keys without a tenant use the default engine. Tenant
engines are opened on first use and closed with the app.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from relevo.engine import Engine
from relevo.settings import Settings, StorageSettings
from relevo.storage.registry import KINDS

TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def _tenant_url(url: str, tenant: str) -> str:
    if not url or url.startswith("memory://"):
        return url  # empty: the tenant's home decides; memory: private to each engine
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        head, _, name = path.rpartition("/")
        return f"sqlite:///{head + '/' if head else ''}tenants/{tenant}/{name}"
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["prefix"] = f"{query.get('prefix', 'relevo:')}t:{tenant}:"
    return urlunsplit(parts._replace(query=urlencode(query)))


def tenant_settings(base: Settings, tenant: str) -> Settings:
    """The base settings with every store moved into the tenant's own namespace."""
    if not TENANT_RE.match(tenant):
        raise ValueError(f"tenant {tenant!r} must match {TENANT_RE.pattern}")
    storage = StorageSettings(**{
        **base.storage.model_dump(),
        **{kind: _tenant_url(getattr(base.storage, kind), tenant) for kind in KINDS},
    })
    return base.model_copy(update={"home": base.home / "tenants" / tenant, "storage": storage})


class Tenants:
    """Tenant engines by name, opened lazily beside the default engine."""

    def __init__(self, default: Engine):
        self.default = default
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def engine(self, tenant: str | None) -> Engine:
        if tenant is None:
            return self.default
        found = self._engines.get(tenant)
        if found is not None:
            return found
        with self._lock:
            if tenant not in self._engines:
                settings = tenant_settings(self.default.settings, tenant)
                settings.home.mkdir(parents=True, exist_ok=True)
                self._engines[tenant] = Engine(settings, encoder=self.default.encoder).open()
            return self._engines[tenant]

    def close(self) -> None:
        with self._lock:
            for engine in self._engines.values():
                engine.close()
            self._engines.clear()
