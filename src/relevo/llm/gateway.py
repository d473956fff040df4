"""The gateway in front of a backend: what makes any model safe to call on the request path.

- the call's timeout is what is left of the request's deadline (less a margin);
- bounded concurrency: a call that cannot get a slot within its time is refused ("busy");
- retries (unavailable / timeout) only while the expected latency still fits the deadline;
- a circuit breaker: ``breaker_failures`` consecutive failures open it for
  ``breaker_open_s``; then one trial call decides (half-open);
- a response cache keyed by the hash of (backend, messages, schema, max_tokens);
- a rate cap (token bucket): beyond it calls are refused ("rate_limited");
- metrics: invocations by use and outcome, tokens in and out, latency, cache hits.
Every refusal or failure raises ``LLMError`` with its reason code; the caller falls back.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from relevo.llm.backends import Backend, Completion, LLMError
from relevo.deadline import Deadline


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    max_concurrency: int = 2
    retries: int = 1
    breaker_failures: int = 3
    breaker_open_s: float = 5.0
    cache_size: int = 10_000
    rate_per_s: float = 20.0
    burst: int = 20
    margin_ms: float = 5.0


class Gateway:
    def __init__(self, backend: Backend, config: GatewayConfig | None = None, metrics=None):
        self.backend = backend
        self.config = config or GatewayConfig()
        self.metrics = metrics
        self._slots = threading.BoundedSemaphore(self.config.max_concurrency)
        self._cache: OrderedDict[str, Completion] = OrderedDict()
        self._owners: dict[str, set[str]] = {}
        self._key_owner: dict[str, str] = {}
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until = 0.0
        self._trial = False
        self._tokens = float(self.config.burst)
        self._refilled = time.monotonic()
        self._latency_ms = 0.0  # EWMA of successful calls, for the retry decision

    @property
    def name(self) -> str:
        return self.backend.name

    def complete(self, use: str, messages: list[dict[str, str]], deadline: Deadline, *, max_tokens: int = 256,
                 schema: dict[str, Any] | None = None, owner: str = "") -> tuple[Completion, bool]:
        """(completion, from_cache). Raises LLMError(reason) instead of failing slowly.
        ``owner``: the user whose data the prompt carries (``forget`` drops their entries)."""
        key = self._key(messages, schema, max_tokens)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
        if cached is not None:
            self._count(use, "cache_hit")
            return cached, True
        self._admit(use)
        attempts = 0
        while True:
            attempts += 1
            left_s = (deadline.remaining_ms() - self.config.margin_ms) / 1000.0
            if left_s <= 0:
                self._count(use, "budget")
                raise LLMError("budget", "no time left for the model")
            if not self._slots.acquire(timeout=left_s):
                self._count(use, "busy")
                raise LLMError("busy", "no free slot before the deadline")
            try:
                started = time.perf_counter()
                completion = self.backend.complete(messages, max_tokens=max_tokens,
                                                   timeout_s=(deadline.remaining_ms() - self.config.margin_ms) / 1000.0,
                                                   schema=schema)
            except LLMError as exc:
                # a timeout under a tight budget says nothing about the backend's health; one
                # under a second or more of budget does, as do refusals and errors
                if exc.reason in ("unavailable", "error") or (exc.reason == "timeout" and left_s >= 1.0):
                    self._failed()
                retry = (exc.reason in ("unavailable", "timeout") and attempts <= self.config.retries
                         and deadline.remaining_ms() - self.config.margin_ms > max(self._latency_ms, 1.0))
                if not retry:
                    self._count(use, exc.reason)
                    raise
                continue
            finally:
                self._slots.release()
            self._succeeded((time.perf_counter() - started) * 1000)
            break
        with self._lock:
            self._cache[key] = completion
            if owner:
                self._owners.setdefault(owner, set()).add(key)
                self._key_owner[key] = owner
            while len(self._cache) > self.config.cache_size:
                evicted, _ = self._cache.popitem(last=False)
                gone = self._key_owner.pop(evicted, None)
                if gone is not None:
                    keys = self._owners.get(gone)
                    if keys is not None:
                        keys.discard(evicted)
                        if not keys:
                            del self._owners[gone]
        self._count(use, "ok")
        if self.metrics is not None:
            self.metrics.llm_tokens.labels(self.name, "in").inc(completion.tokens_in)
            self.metrics.llm_tokens.labels(self.name, "out").inc(completion.tokens_out)
            self.metrics.llm_latency.labels(self.name).observe(completion.seconds)
        return completion, False

    def _key(self, messages, schema, max_tokens) -> str:
        raw = orjson.dumps([self.backend.name, messages, schema, max_tokens], option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(raw).hexdigest()

    def _admit(self, use: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._open_until:
                self._count(use, "circuit_open")
                raise LLMError("circuit_open", "the backend failed repeatedly; calls paused")
            if self._open_until and not self._trial:  # half-open: this call is the trial
                self._trial = True
            elif self._open_until:
                self._count(use, "circuit_open")
                raise LLMError("circuit_open", "a trial call is in flight")
            self._tokens = min(self.config.burst, self._tokens + (now - self._refilled) * self.config.rate_per_s)
            self._refilled = now
            if self._tokens < 1.0:
                self._count(use, "rate_limited")
                raise LLMError("rate_limited", "over the LLM call rate")
            self._tokens -= 1.0

    def _failed(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial or self._failures >= self.config.breaker_failures:
                self._open_until = time.monotonic() + self.config.breaker_open_s
                self._trial = False

    def _succeeded(self, ms: float) -> None:
        with self._lock:
            self._failures, self._open_until, self._trial = 0, 0.0, False
            self._latency_ms = ms if self._latency_ms == 0 else 0.8 * self._latency_ms + 0.2 * ms

    def _count(self, use: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.llm_calls.labels(self.name, use, outcome).inc()

    def forget(self, owner: str) -> int:
        """Erasure: drop the cached completions of prompts that carried ``owner``'s data."""
        with self._lock:
            keys = self._owners.pop(owner, set())
            for k in keys:
                self._key_owner.pop(k, None)
            return sum(self._cache.pop(k, None) is not None for k in keys)

    @property
    def circuit_open(self) -> bool:
        return time.monotonic() < self._open_until

    def close(self) -> None:
        self.backend.close()
