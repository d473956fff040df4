"""Event batchers: buffer events, send them ``max_batch`` at a time (at most the server's
1,000 per request), or once the oldest buffered event has waited ``max_delay_s``, and on
close.

Each event gets its ``id`` when it is added (``prepare_event``), so a batch that is retried
or sent again after an error is deduplicated by the server's log, never appended twice.
A batch the server refuses as too large (413, a body over its byte limit) is split in
halves. A batch that fails otherwise is kept in ``failed_events`` (ids included, so it can be
sent again safely) and its error raised from the call that sent it, or, when the
background timer sent it, from the next ``add``, ``flush`` or ``close``; ``close`` still
sends every batch after a failed one. Batches are sent one at a time, in the order events were added.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from relevo.client._calls import MAX_BATCH, EventLike, prepare_event, send_prepared
from relevo.client._errors import PayloadTooLarge, RelevoAPIError
from relevo.client._models import AppendResult, BatchResult

if TYPE_CHECKING:
    from relevo.client._async import AsyncClient
    from relevo.client._sync import Client

__all__ = ["AsyncEventBatcher", "EventBatcher"]


class _Totals:
    """Counters and the limits shared by both batchers."""

    def __init__(self, max_batch: int, max_delay_s: float):
        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch must be in [1, {MAX_BATCH}] (the server's limit), got {max_batch}")
        if not max_delay_s > 0:
            raise ValueError(f"max_delay_s must be > 0, got {max_delay_s}")
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.failed_events: list[dict[str, Any]] = []
        self._buffer: list[dict[str, Any]] = []
        self._oldest: float | None = None  # time.monotonic() when the oldest buffered event came
        self._error: BaseException | None = None
        self._closed = False
        self._accepted = self._duplicates = self._requests = 0

    @property
    def result(self) -> BatchResult:
        """Totals so far (final after ``close``)."""
        return BatchResult(self._accepted, self._duplicates, self._requests, len(self.failed_events))

    @property
    def pending(self) -> int:
        """Events buffered and not yet sent."""
        return len(self._buffer)

    def _count(self, result: AppendResult) -> None:
        self._requests += 1
        self._accepted += result.accepted
        self._duplicates += result.duplicates

    def _take(self, only_full: bool) -> list[dict[str, Any]] | None:
        if len(self._buffer) < (self.max_batch if only_full else 1):
            return None
        batch = self._buffer[: self.max_batch]
        del self._buffer[: self.max_batch]
        self._oldest = time.monotonic() if self._buffer else None
        return batch

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class EventBatcher(_Totals):
    """``with client.event_batcher() as batch: batch.add(event)``; ``batch.result`` after the
    block holds the totals (``close()`` returns them too). Thread-safe; a daemon thread
    sends the time-triggered batches."""

    def __init__(self, client: Client, max_batch: int = MAX_BATCH, max_delay_s: float = 0.5):
        super().__init__(max_batch, max_delay_s)
        self._client = client
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()  # one request at a time, batches in order
        self._timer: threading.Thread | None = None

    def __enter__(self) -> EventBatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, event: EventLike) -> None:
        self.extend((event,))

    def extend(self, events: Iterable[EventLike]) -> None:
        """Buffer events; sends full batches before returning."""
        prepared = [prepare_event(e) for e in events]
        with self._cond:
            if self._closed:
                raise RuntimeError("the event batcher is closed")
            if prepared and not self._buffer:
                self._oldest = time.monotonic()
                self._cond.notify()
            self._buffer.extend(prepared)  # buffered before a pending error is raised: never dropped
            full = len(self._buffer) >= self.max_batch
            if self._timer is None:
                self._timer = threading.Thread(target=self._run, name="relevo-event-batcher", daemon=True)
                self._timer.start()
        self._raise_pending()
        if full:
            self._flush(only_full=True)

    def flush(self) -> None:
        """Send everything buffered now."""
        self._flush(only_full=False)
        self._raise_pending()

    def close(self) -> BatchResult:
        """Stop the timer, send what is buffered, and return the totals."""
        with self._cond:
            already, self._closed = self._closed, True
            self._cond.notify_all()
        if already:
            return self.result
        if self._timer is not None:
            self._timer.join()
        self._flush(only_full=False, keep_going=True)
        self._raise_pending()
        return self.result

    def _flush(self, only_full: bool, keep_going: bool = False) -> None:
        """Send buffered batches; with ``keep_going`` a failed batch does not hold back the
        ones after it (on close) and the first error is raised at the end."""
        first: RelevoAPIError | None = None
        with self._send_lock:
            while True:
                with self._cond:
                    batch = self._take(only_full)
                if batch is None:
                    break
                try:
                    self._deliver(batch)
                except RelevoAPIError as exc:
                    if not keep_going:
                        raise
                    first = first or exc
        if first is not None:
            raise first

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        try:
            result = self._client.send(send_prepared(batch))
        except PayloadTooLarge:
            if len(batch) == 1:
                self.failed_events.extend(batch)
                raise
            half = len(batch) // 2
            try:
                self._deliver(batch[:half])
            except RelevoAPIError:
                self.failed_events.extend(batch[half:])
                raise
            self._deliver(batch[half:])
            return
        except Exception:  # typed or not, the batch is kept for the caller
            self.failed_events.extend(batch)
            raise
        self._count(result)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._oldest is None:
                        self._cond.wait()
                        continue
                    wait = self._oldest + self.max_delay_s - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._closed:
                    return
            try:
                self._flush(only_full=False)
            except Exception as exc:  # raised to the caller from its next call
                with self._cond:
                    self._error = self._error or exc


class AsyncEventBatcher(_Totals):
    """``async with client.event_batcher() as batch: await batch.add(event)``; an asyncio task
    sends the time-triggered batches."""

    def __init__(self, client: AsyncClient, max_batch: int = MAX_BATCH, max_delay_s: float = 0.5):
        super().__init__(max_batch, max_delay_s)
        self._client = client
        self._send_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AsyncEventBatcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def add(self, event: EventLike) -> None:
        await self.extend((event,))

    async def extend(self, events: Iterable[EventLike]) -> None:
        if self._closed:
            raise RuntimeError("the event batcher is closed")
        prepared = [prepare_event(e) for e in events]
        if prepared and not self._buffer:
            self._oldest = time.monotonic()
            self._wake.set()
        self._buffer.extend(prepared)  # buffered before a pending error is raised: never dropped
        self._raise_pending()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        if len(self._buffer) >= self.max_batch:
            await self._flush(only_full=True)

    async def flush(self) -> None:
        await self._flush(only_full=False)
        self._raise_pending()

    async def close(self) -> BatchResult:
        if self._closed:
            return self.result
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self._flush(only_full=False, keep_going=True)
        self._raise_pending()
        return self.result

    async def _flush(self, only_full: bool, keep_going: bool = False) -> None:
        first: RelevoAPIError | None = None
        async with self._send_lock:
            while (batch := self._take(only_full)) is not None:
                try:
                    await self._deliver(batch)
                except RelevoAPIError as exc:
                    if not keep_going:
                        raise
                    first = first or exc
        if first is not None:
            raise first

    async def _deliver(self, batch: list[dict[str, Any]]) -> None:
        try:
            result = await self._client.send(send_prepared(batch))
        except PayloadTooLarge:
            if len(batch) == 1:
                self.failed_events.extend(batch)
                raise
            half = len(batch) // 2
            try:
                await self._deliver(batch[:half])
            except RelevoAPIError:
                self.failed_events.extend(batch[half:])
                raise
            await self._deliver(batch[half:])
            return
        except Exception:  # typed or not, the batch is kept for the caller
            self.failed_events.extend(batch)
            raise
        self._count(result)

    async def _run(self) -> None:
        while not self._closed:
            if self._oldest is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = self._oldest + self.max_delay_s - time.monotonic()
            if wait > 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
                continue
            try:
                await self._flush(only_full=False)
            except Exception as exc:  # raised to the caller from its next call
                self._error = self._error or exc
