"""When a failed request is retried, and after how long (shared by the sync and async clients).

A request is retried only when repeating it cannot do anything twice:

- the connection could not be made (``ConnectError``, ``ConnectTimeout``, ``PoolTimeout``):
  nothing reached the server, any request;
- ``429``: the key check rejects before the route runs, any request; the wait is the
  server's ``Retry-After`` (a few percent of jitter added), and an answer that asks for
  more than ``MAX_RETRY_AFTER_S`` is raised at once as ``RateLimited``;
- ``502``, ``503``, ``504`` and a connection lost after the request was sent (read or write
  errors and timeouts): idempotent requests only (GET, PUT, DELETE, and the POSTs the
  server makes idempotent: items are upserted by id, events deduplicated by id, the first
  reward of a decision wins).

Waits otherwise grow exponentially with "equal jitter":
``d = min(max_backoff, backoff * 2**attempt)``, wait uniform in ``[d/2, d]``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import httpx

from relevo.client._errors import parse_retry_after

__all__ = ["MAX_RETRY_AFTER_S", "RetryPolicy"]

MAX_RETRY_AFTER_S = 60.0
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_NEVER = (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.ProxyError,  # configuration, not luck
          httpx.DecodingError, httpx.TooManyRedirects)
_IDEMPOTENT_STATUS = frozenset({502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``retries`` after the first try; ``backoff`` seconds before the first retry
    (doubling each time, capped at ``max_backoff``)."""

    retries: int = 3
    backoff: float = 0.2
    max_backoff: float = 10.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.backoff < 0:
            raise ValueError(f"backoff must be >= 0, got {self.backoff}")

    def backoff_delay(self, attempt: int) -> float:
        """Seconds before retry number ``attempt + 1`` (``attempt`` retries made so far)."""
        d = min(self.max_backoff, self.backoff * 2.0**attempt)
        return d / 2 + self.rng.random() * d / 2

    def after_error(self, exc: httpx.HTTPError, idempotent: bool, attempt: int) -> float | None:
        """Seconds to wait before retrying after a transport error; None: give up."""
        if attempt >= self.retries or isinstance(exc, _NEVER):
            return None
        if isinstance(exc, _NOT_SENT) or idempotent:
            return self.backoff_delay(attempt)
        return None

    def after_response(self, response: httpx.Response, idempotent: bool, attempt: int) -> float | None:
        """Seconds to wait before retrying after an error status; None: give up."""
        if attempt >= self.retries:
            return None
        status = response.status_code
        if status == 429:
            wait = parse_retry_after(response.headers.get("retry-after"))
            if wait is None:
                return self.backoff_delay(attempt)
            if wait > MAX_RETRY_AFTER_S:
                return None
            return wait * (1.0 + 0.05 * self.rng.random())
        if status in _IDEMPOTENT_STATUS and idempotent:
            return self.backoff_delay(attempt)
        return None
