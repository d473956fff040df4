"""The per-user context the stream processor maintains and the read path serves.

Stored in the FeatureStore under namespace ``users`` as ``len(json) | json | vectors``
(vectors raw float32), so a read costs one lookup and no float parsing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import orjson

from relevo.emotion.behaviour import SessionAffect

USERS_NS = "users"
PREFERENCES_NS = "preferences"
CONSENT_NS = "consent"
ITEM_STATS_NS = "item_stats"
ITEMS_NS = "items"
MAX_SEEN = 5000
MAX_RECENT = 50


@dataclass(slots=True)
class UserState:
    """Derived state of one user.

    ``vector``/``session_vector``: float32 (dim,), exponentially weighted sums of the item
    vectors the user engaged with (weights by event type; negative for skips and low
    ratings), not normalised. ``applied_through``: log position of the last event applied
    (redeliveries at or below it are skipped). ``event_time``: latest event time reflected;
    ``received_at``: when relevo received the latest event reflected; ``updated_at``: when
    this state became servable.
    """

    user_id: str
    dim: int
    vector: np.ndarray | None = None
    session_vector: np.ndarray | None = None
    session_started: float = 0.0
    session_last: float = 0.0
    session_events: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    tag_affinity: dict[str, float] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    recent: list[str] = field(default_factory=list)
    applied_through: int = 0
    event_time: float = 0.0
    received_at: float = 0.0
    updated_at: float = 0.0
    affect: SessionAffect | None = None  # only with emotion consent
    abandoned_sessions: int = 0  # only with emotion consent

    def encode(self) -> bytes:
        meta = {
            "user_id": self.user_id,
            "dim": self.dim,
            "has_vector": self.vector is not None,
            "has_session": self.session_vector is not None,
            "session_started": self.session_started,
            "session_last": self.session_last,
            "session_events": self.session_events,
            "counters": self.counters,
            "tag_affinity": self.tag_affinity,
            "seen": self.seen,
            "recent": self.recent,
            "applied_through": self.applied_through,
            "event_time": self.event_time,
            "received_at": self.received_at,
            "updated_at": self.updated_at,
            "affect": self.affect.to_dict() if self.affect is not None else None,
            "abandoned_sessions": self.abandoned_sessions,
        }
        head = orjson.dumps(meta)
        parts = [struct.pack("<I", len(head)), head]
        for vec in (self.vector, self.session_vector):
            if vec is not None:
                parts.append(np.asarray(vec, dtype=np.float32).tobytes())
        return b"".join(parts)

    @classmethod
    def decode(cls, raw: bytes) -> "UserState":
        (size,) = struct.unpack_from("<I", raw, 0)
        meta = orjson.loads(raw[4 : 4 + size])
        dim = meta.pop("dim")
        if meta.get("affect") is not None:
            meta["affect"] = SessionAffect.from_dict(meta["affect"])
        offset = 4 + size
        vectors = []
        for flag in (meta.pop("has_vector"), meta.pop("has_session")):
            if flag:
                vectors.append(np.frombuffer(raw, dtype=np.float32, count=dim, offset=offset).copy())
                offset += 4 * dim
            else:
                vectors.append(None)
        return cls(dim=dim, vector=vectors[0], session_vector=vectors[1], **meta)


@dataclass(slots=True)
class ItemStats:
    """Engagement counters of one item, with the log position last applied."""

    item_id: str
    engagement: float = 0.0
    events: int = 0
    last_event: float = 0.0
    applied_through: int = 0

    def encode(self) -> bytes:
        return orjson.dumps(
            [self.engagement, self.events, self.last_event, self.applied_through]
        )

    @classmethod
    def decode(cls, item_id: str, raw: bytes) -> "ItemStats":
        engagement, events, last_event, applied = orjson.loads(raw)
        return cls(item_id, engagement, events, last_event, applied)
