"""Recompute a user's cached answers in the background once the stream has applied their
events, so that their next request is an edge hit on an answer that already reflects them.

The user's event clears their cached answers at once (invalidation); the refresher then
re-runs the requests the user made (up to 4 per user: n, filters, context bucket) through
the tier the orchestrator would pick, as previews (nothing logged; the decision is logged
when the answer is served), and stores them unless another event arrived meanwhile.
Pending users are bounded (``max_pending``, oldest dropped: they just miss once).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Iterable

import structlog

log = structlog.get_logger(__name__)


class Refresher:
    def __init__(self, orchestrator, max_pending: int = 10_000, metrics=None):
        self.orchestrator = orchestrator
        self.max_pending = max_pending
        self.metrics = metrics
        self._pending: OrderedDict[str, None] = OrderedDict()
        self._cond = threading.Condition()
        self._busy = False
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="relevo-refresh", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def schedule(self, users: Iterable[str]) -> None:
        cache = self.orchestrator.edge.cache
        with self._cond:
            for user_id in users:
                if not cache.requests(user_id):
                    continue  # never asked (or erased): nothing to refresh
                self._pending[user_id] = None
                self._pending.move_to_end(user_id)
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._stop)
                if self._stop:
                    return
                user_id, _ = self._pending.popitem(last=False)
                self._busy = True
            try:
                cache = self.orchestrator.edge.cache
                generation = cache.generation(user_id)  # before the requests: an erasure after this refuses the put
                for req in cache.requests(user_id):
                    stored = self.orchestrator.refresh(req, generation)
                    if self.metrics is not None:
                        self.metrics.refreshes.labels("stored" if stored else "skipped").inc()
            except Exception as exc:  # noqa: BLE001 - a failed refresh is a later miss, not a crash
                log.warning("refresh_failed", error=repr(exc))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
