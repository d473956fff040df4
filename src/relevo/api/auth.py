"""API keys, scopes and per-key rate limits, checked by a pure ASGI middleware before a
route is resolved or its body read: an unauthenticated request gets 401, never a 422.

Keys are random secrets (``rlv_`` + 256 bits, ``relevo keys new``); settings hold only
``sha256:<hex>`` of each (``ApiSettings.keys``). A plain SHA-256 is adequate here: the
secrets are 256-bit random strings, not passwords, so there is nothing to brute-force that
a slow hash would protect. A presented key is hashed once and compared with
``hmac.compare_digest`` against every configured hash, without stopping at a match.

Keys are read from ``Authorization: Bearer <key>``, then ``X-API-Key``, and on
``/personalizer/v1.0`` routes also Azure's ``Ocp-Apim-Subscription-Key``.

Scopes (no scope implies another; ``admin`` does not include ``erase``). ``*`` is one path
segment, ``/**`` the path and everything under it; the first matching rule wins:

=========  ====================================================================================
scope      routes
=========  ====================================================================================
(public)   GET /healthz, GET /dashboard (the page only: it holds no data)
ingest     POST /v1/events, PUT /v1/users/{id}/preferences (and POST .../describe), PUT /v1/users/{id}/consent
recommend  POST /v1/recommendations, GET /v1/popular, Personalizer rank / reward / activate (single and multi-slot)
either     POST /v1/feedback: recommend or ingest (an event with a decision_id is a reward too)
erase      DELETE /v1/users/{id}
admin      /v1/items/**, /v1/experiments/**, /v1/decisions/**, /v1/users/{id}/export/**,
           GET /v1/users/{id}/** (preferences, consent, any later read of a user's data),
           GET /v1/stats, GET /v1/dashboard/**, GET /metrics, Personalizer /configurations/** and
           /evaluations/**, GET /openapi.json, /docs/**, /redoc
=========  ====================================================================================

A route no rule names needs ``admin`` (fail closed); ``tests/api/test_auth.py`` fails for
such a route so that its scope is chosen, not inherited. With ``require_keys = false`` the
middleware is not installed at all (local development, ``relevo demo``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson

from relevo.settings import ApiSettings

__all__ = ["RULES", "ApiKeyAuth", "AuthConfigError", "KeyRing", "Rule", "TokenBucket", "hash_key", "keyring_for",
           "new_key", "resolve"]

KEY_PREFIX = "rlv_"
PERSONALIZER_PREFIX = "/personalizer/v1.0"
ADMIN = frozenset({"admin"})
_MAX_KEY_BYTES = 512


@dataclass(frozen=True)
class Rule:
    """``methods`` (``*``: any) on paths matching ``pattern`` need one of ``scopes``;
    empty ``scopes``: public."""

    methods: frozenset[str]
    pattern: str
    scopes: frozenset[str]


def _rule(methods: str, pattern: str, scopes: str) -> Rule:
    return Rule(frozenset(methods.split()), pattern, frozenset(scopes.split()))


_P = PERSONALIZER_PREFIX
RULES: tuple[Rule, ...] = (
    _rule("GET", "/healthz", ""),
    _rule("GET", "/dashboard", ""),  # the page holds no data; its JSON needs admin
    _rule("POST", "/v1/events", "ingest"),
    _rule("PUT", "/v1/users/*/preferences", "ingest"),
    _rule("POST", "/v1/users/*/preferences/describe", "ingest"),
    _rule("PUT", "/v1/users/*/consent", "ingest"),
    _rule("*", "/v1/users/*/export/**", "admin"),
    _rule("GET", "/v1/users/*/**", "admin"),
    _rule("DELETE", "/v1/users/*", "erase"),
    _rule("POST", "/v1/recommendations", "recommend"),
    _rule("GET", "/v1/popular", "recommend"),
    _rule("POST", "/v1/feedback", "recommend ingest"),
    _rule("POST", f"{_P}/rank", "recommend"),
    _rule("POST", f"{_P}/multislot/rank", "recommend"),
    _rule("POST", f"{_P}/events/*/reward", "recommend"),
    _rule("POST", f"{_P}/events/*/activate", "recommend"),
    _rule("POST", f"{_P}/multislot/events/*/reward", "recommend"),
    _rule("POST", f"{_P}/multislot/events/*/activate", "recommend"),
    _rule("*", f"{_P}/configurations/**", "admin"),
    _rule("*", f"{_P}/evaluations/**", "admin"),
    _rule("*", "/v1/items/**", "admin"),
    _rule("*", "/v1/experiments/**", "admin"),
    _rule("*", "/v1/decisions/**", "admin"),
    _rule("GET", "/v1/dashboard/**", "admin"),
    _rule("GET", "/v1/stats", "admin"),
    _rule("GET", "/metrics", "admin"),
    _rule("GET", "/openapi.json", "admin"),
    _rule("GET", "/docs/**", "admin"),
    _rule("GET", "/redoc", "admin"),
)


def _regex(pattern: str) -> str:
    tail = pattern.endswith("/**")
    body = pattern[:-3] if tail else pattern
    out = "/".join("[^/]+" if part == "*" else re.escape(part) for part in body.split("/"))
    return out + ("(?:/.*)?" if tail else "")


class _Resolver:
    """Rule lookup in one dict probe for static paths, one regex match otherwise."""

    METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*")  # "*": any other method

    def __init__(self, rules: tuple[Rule, ...]):
        self.by_method: dict[str, tuple[re.Pattern[str], list[Rule]]] = {}
        for method in self.METHODS:
            chosen = [r for r in rules if method in r.methods or "*" in r.methods]
            alternatives = "|".join(f"(?P<r{i}>{_regex(r.pattern)})" for i, r in enumerate(chosen))
            self.by_method[method] = (re.compile(alternatives or "(?!)"), chosen)
        self.static = {(method, r.pattern): self._match(method, r.pattern)
                       for method in self.METHODS for r in rules if "*" not in r.pattern}

    def _match(self, method: str, path: str) -> Rule | None:
        regex, chosen = self.by_method.get(method) or self.by_method["*"]
        m = regex.fullmatch(path)
        return chosen[int(m.lastgroup[1:])] if m is not None else None

    def __call__(self, method: str, path: str) -> Rule | None:
        if method == "HEAD":
            method = "GET"
        if len(path) > 1 and path[-1] == "/":
            path = path.rstrip("/") or "/"
        rule = self.static.get((method, path), self)
        return self._match(method, path) if rule is self else rule


_RESOLVER = _Resolver(RULES)


def resolve(method: str, path: str) -> Rule | None:
    """The first rule for ``(method, path)``, a request path or a route template; None when
    no rule names it (the middleware then requires ``admin``)."""
    return _RESOLVER(method, path)


class AuthConfigError(ValueError):
    """Keys are required but none is configured."""


def hash_key(secret: str) -> str:
    """``sha256:<64 hex>`` of a key, the form settings hold."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def new_key(key_id: str, scopes: Iterable[str], rate_per_s: float | None = None,
            burst: int | None = None, tenant: str | None = None) -> tuple[str, ApiSettings.Key]:
    """A fresh random secret (``rlv_`` + 43 url-safe characters, 256 bits) and its validated
    settings entry. The secret is shown once and never stored."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    entry = ApiSettings.Key(id=key_id, hash=hash_key(secret), scopes=tuple(scopes), rate_per_s=rate_per_s,
                            burst=burst, tenant=tenant)
    return secret, entry


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; each request takes one. Thread-safe."""

    __slots__ = ("burst", "clock", "lock", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.stamp = clock()
        self.lock = threading.Lock()

    def take(self) -> float:
        """0.0 when a token was taken, else the seconds until one is available."""
        with self.lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return 0.0
            return (1.0 - self.tokens) / self.rate


@dataclass(frozen=True)
class Principal:
    id: str
    scopes: frozenset[str]
    bucket: TokenBucket | None
    tenant: str | None = None


class KeyRing:
    """The configured keys: SHA-256 digests, scopes and a rate-limit bucket per key."""

    def __init__(self, api: ApiSettings, clock: Callable[[], float] = time.monotonic):
        self.entries: list[tuple[bytes, Principal]] = []
        for key in api.keys:
            rate = key.rate_per_s if key.rate_per_s is not None else api.rate_per_s
            burst = key.burst if key.burst is not None else api.burst
            bucket = None
            if rate is not None:
                bucket = TokenBucket(rate, burst if burst is not None else max(1, math.ceil(rate)), clock)
            self.entries.append((bytes.fromhex(key.hash[7:]), Principal(key.id, frozenset(key.scopes), bucket,
                                                                                key.tenant)))

    def identify(self, secret: bytes) -> Principal | None:
        """The key's principal, or None. Compares with every configured digest (no early exit)."""
        digest = hashlib.sha256(secret).digest()
        found = None
        for expected, principal in self.entries:
            if hmac.compare_digest(expected, digest):
                found = principal
        return found


NO_KEYS_MESSAGE = (
    "API keys are required (RELEVO_API__REQUIRE_KEYS=true) but none is configured.\n"
    "  Create one:   relevo keys new --id web --scopes recommend,ingest\n"
    "  and add the printed entry to RELEVO_API__KEYS (a JSON list) or [[api.keys]] in relevo.toml;\n"
    "  or, for local development only, set RELEVO_API__REQUIRE_KEYS=false."
)


def keyring_for(api: ApiSettings) -> KeyRing | None:
    """The KeyRing to enforce, None when keys are off; AuthConfigError when keys are required
    and none is configured (nobody could use the API: refuse to serve instead)."""
    if not api.require_keys:
        return None
    if not api.keys:
        raise AuthConfigError(NO_KEYS_MESSAGE)
    return KeyRing(api)


_JSON = (b"content-type", b"application/json")
_AZURE = {401: ("PermissionDenied", "Unauthenticated"), 403: ("PermissionDenied", "Forbidden"),
          429: ("TooManyRequests", "RateLimited")}
_CODES = {401: "unauthenticated", 403: "forbidden", 429: "rate_limited"}


def _credentials(headers: Iterable[tuple[bytes, bytes]], azure: bool) -> tuple[bytes | None, str]:
    """The presented key (Authorization, then X-API-Key, then on Personalizer routes
    Ocp-Apim-Subscription-Key) or None with the reason."""
    bearer = x_key = ocp = None
    for name, value in headers:
        if name == b"authorization":
            bearer = value
        elif name == b"x-api-key":
            x_key = value
        elif name == b"ocp-apim-subscription-key":
            ocp = value
    if bearer is not None:
        if bearer[:7].lower() != b"bearer ":
            return None, "the Authorization header must be 'Bearer <key>'"
        return bearer[7:].strip(), ""
    if x_key is not None:
        return x_key.strip(), ""
    if ocp is not None:
        if azure:
            return ocp.strip(), ""
        return None, f"Ocp-Apim-Subscription-Key is accepted on {PERSONALIZER_PREFIX} only; send X-API-Key"
    hint = ", X-API-Key or Ocp-Apim-Subscription-Key" if azure else " or X-API-Key"
    return None, f"missing API key: send Authorization: Bearer <key>{hint}"


class ApiKeyAuth:
    """ASGI middleware: authenticate, check the route's scope, take a rate-limit token, then
    pass the request on with ``request.state.api_key_id`` set. ``on_reject(code)`` is
    called for each rejection (metrics)."""

    def __init__(self, app, keyring: KeyRing, on_reject: Callable[[str], None] | None = None):
        self.app = app
        self.keyring = keyring
        self.on_reject = on_reject

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        rule = _RESOLVER(scope.get("method", "GET"), path)
        if rule is not None and not rule.scopes:
            await self.app(scope, receive, send)
            return
        needed = rule.scopes if rule is not None else ADMIN
        azure = path.startswith(PERSONALIZER_PREFIX)
        secret, problem = _credentials(scope["headers"], azure)
        principal = None
        if secret is not None:
            principal = self.keyring.identify(secret) if 0 < len(secret) <= _MAX_KEY_BYTES else None
            problem = "invalid API key"
        if principal is None:
            await self._reject(scope, send, 401, problem, azure)
            return
        if principal.scopes.isdisjoint(needed):
            await self._reject(scope, send, 403, f"key {principal.id!r} may not do this: it needs scope "
                               + " or ".join(sorted(needed)), azure)
            return
        if principal.bucket is not None:
            wait = principal.bucket.take()
            if wait:
                await self._reject(scope, send, 429, f"rate limit of key {principal.id!r} "
                                   f"({principal.bucket.rate:g}/s) exceeded; retry in {wait:.2f} s", azure,
                                   retry_after=wait)
                return
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["api_key_id"] = principal.id
        state["tenant"] = principal.tenant  # the engine that serves this key (tenants.py)
        await self.app(scope, receive, send)

    async def _reject(self, scope, send, status: int, message: str, azure: bool, retry_after: float = 0.0):
        if self.on_reject is not None:
            self.on_reject(_CODES[status])
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        if azure:
            code, inner = _AZURE[status]
            body = orjson.dumps({"error": {"code": code, "message": message, "innerError": {"code": inner}}})
        else:
            body = orjson.dumps({"error": {"code": _CODES[status], "message": message}})
        headers = [_JSON, (b"content-length", str(len(body)).encode())]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="relevo"'))
        elif status == 429:
            headers.append((b"retry-after", str(max(1, math.ceil(retry_after))).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
