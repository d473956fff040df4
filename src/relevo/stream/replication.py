"""Keep a serving process's local copies current when several processes share Redis.

Each process holds its own vector index, catalog (with popularity) and bandit posteriors.
Writers publish what changed on the item-update feed (items added or deleted, a
partition's new engagement counts); every process tails the feed from the position it
had when it loaded its copies, so it catches up on start and then follows within a poll.
Posteriors are re-read when their guard token changed (``PersistedPolicy.refresh``).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import orjson
import structlog

from relevo.storage.protocols import is_outage

log = structlog.get_logger(__name__)


class Feed(Protocol):
    def feed_publish(self, record: bytes) -> str: ...

    def feed_head(self) -> str: ...

    def feed_read(self, after: str, count: int = 1000, block_ms: int = 0) -> tuple[str, list[bytes], bool]: ...


def node_name() -> str:
    """This process, as named in consumer groups and feed records: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Handlers:
    upsert: Callable[[list[str]], None]  # items added or changed: re-read them from the store
    delete: Callable[[list[str]], None]
    engagement: Callable[[int, dict[str, float]], None]  # partition, item -> engagement
    reload: Callable[[], None]  # the feed lost records this process had not read: reload all
    every_second: list[Callable[[], object]] = field(default_factory=list)  # e.g. posterior refresh


class Replicator:
    def __init__(self, feed: Feed, handlers: Handlers, origin: str, after: str, poll_ms: int = 200):
        self.feed, self.handlers, self.origin = feed, handlers, origin
        self.after = after
        self.poll_ms = poll_ms
        self.applied = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ticked = 0.0

    # -- writers -------------------------------------------------------------------------

    def publish(self, op: str, **body) -> None:
        """Best effort: a lost record only delays other processes until they reload."""
        try:
            self.feed.feed_publish(orjson.dumps({"op": op, "origin": self.origin, **body}))
        except Exception as exc:  # noqa: BLE001 - the write it follows has succeeded
            log.warning("feed_publish_failed", op=op, error=repr(exc))

    # -- reader --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="relevo-replicate", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def poll(self, block_ms: int = 0) -> int:
        """Apply the records published since the last poll; returns how many."""
        last, records, gap = self.feed.feed_read(self.after, block_ms=block_ms)
        if gap:
            log.warning("feed_gap_reloading")
            self.handlers.reload()
        for raw in records:
            try:
                self._apply(raw)
            except Exception as exc:
                if is_outage(exc):  # stop: every record of this read comes again (all idempotent)
                    raise
                log.exception("feed_record_skipped", error=repr(exc))  # bad data: not again
        self.after = last
        return len(records)

    def _apply(self, raw: bytes) -> None:
        record = orjson.loads(raw)
        if record.get("origin") == self.origin:
            return
        op = record.get("op")
        if op == "upsert":
            self.handlers.upsert(list(record["ids"]))
        elif op == "delete":
            self.handlers.delete(list(record["ids"]))
        elif op == "engagement":
            self.handlers.engagement(int(record["p"]), dict(record["items"]))
        self.applied += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll(block_ms=self.poll_ms)
            except Exception as exc:  # keep following; an outage just delays
                self._failed(exc)
            if time.monotonic() - self._ticked >= 1.0:  # even while the feed fails
                self._ticked = time.monotonic()
                for tick in self.handlers.every_second:
                    try:
                        tick()
                    except Exception as exc:  # noqa: BLE001
                        self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        self.last_error = repr(exc)
        if not is_outage(exc):
            log.exception("replication_failed", error=repr(exc))
        self._stop.wait(0.5)
