"""'User U changed': the message that clears U's cached answers, in-process and across
processes (Redis pub/sub).

Sent twice per event: when the event is accepted (so the very next request cannot be
served the list that predates it) and when the stream processor has applied it (so an
answer computed in between, from the older state, is not kept either). A message carries
the users and, per user, when the event was received, from which the receiving edge
measures the invalidation lag.
"""

from __future__ import annotations

import threading
from typing import Callable

import orjson
import structlog

log = structlog.get_logger(__name__)

# (user id -> received_at epoch s, applied): ``applied`` is False when the event was just
# accepted, True when the stream processor has applied it (the lag is measured on those)
Listener = Callable[[dict[str, float], bool], None]


def encode(changed: dict[str, float], applied: bool) -> bytes:
    return orjson.dumps({"users": changed, "applied": applied})


def decode(raw: bytes) -> tuple[dict[str, float], bool]:
    data = orjson.loads(raw)
    if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
        raise ValueError('an invalidation message is {"users": {user id: received_at}, "applied": bool}')
    return {str(k): float(v) for k, v in data["users"].items()}, bool(data.get("applied", False))


class InvalidationBus:
    """Fan-out to in-process listeners and, when configured, a Redis pub/sub channel."""

    def __init__(self, redis_url: str = "", channel: str = "relevo:invalidate"):
        self._listeners: list[Listener] = []
        self.channel = channel
        self._redis = None
        if redis_url:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # no retries and short timeouts: a Redis outage costs one publish <= 0.25 s, not seconds
            self._redis = redis.Redis.from_url(redis_url, socket_timeout=0.25, socket_connect_timeout=0.25,
                                               retry=Retry(NoBackoff(), 0))

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def publish(self, changed: dict[str, float], applied: bool) -> None:
        if not changed:
            return
        for listener in self._listeners:
            listener(changed, applied)
        if self._redis is not None:
            try:
                self._redis.publish(self.channel, encode(changed, applied))
            except Exception as exc:  # noqa: BLE001 - an unreachable bus must not fail ingest
                log.warning("invalidation_publish_failed", error=repr(exc))

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()


class RedisSubscriber:
    """Listens on a Redis pub/sub channel in a thread and hands each message to
    ``listener``; reconnects after a lost connection. ``on_reconnect`` is called on every
    successful subscription, the first included: messages may have been missed while not
    subscribed, so the caller drops what it cached."""

    def __init__(self, redis_url: str, channel: str, listener: Listener,
                 on_reconnect: Callable[[], None] | None = None):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # no silent reconnects: a lost connection must surface here so the cache is dropped
        self._client = redis.Redis.from_url(redis_url, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0))
        self.channel = channel
        self.listener = listener
        self.on_reconnect = on_reconnect
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relevo-invalidation", daemon=True)

    def start(self, timeout: float = 5.0) -> "RedisSubscriber":
        self._thread.start()
        self._ready.wait(timeout)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                if self.on_reconnect is not None:
                    self.on_reconnect()
                self._ready.set()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is None or message.get("type") != "message":
                        continue
                    try:
                        self.listener(*decode(message["data"]))
                    except ValueError as exc:
                        log.warning("invalidation_message_invalid", error=repr(exc))
                pubsub.close()
            except Exception as exc:  # noqa: BLE001 - keep listening through Redis restarts
                log.warning("invalidation_subscriber_error", error=repr(exc))
                self._stop.wait(0.5)
