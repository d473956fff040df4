"""Per-user consent, stored with read-your-writes in the FeatureStore (namespace
``consent``). Default: nothing granted. The privacy issue extends the purposes."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import orjson

from relevo.context.state import CONSENT_NS
from relevo.storage.protocols import FeatureStore

PURPOSES = ("emotion",)


@dataclass(slots=True)
class Consent:
    emotion: bool = False
    updated_at: float = 0.0

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes | None) -> "Consent":
        if raw is None:
            return cls()
        data = orjson.loads(raw)
        return cls(**{k: v for k, v in data.items() if k in ("emotion", "updated_at")})


def read(store: FeatureStore, user_id: str) -> Consent:
    return Consent.decode(store.get(CONSENT_NS, user_id))


def read_many(store: FeatureStore, user_ids: list[str]) -> dict[str, Consent]:
    return {u: Consent.decode(raw) for u, raw in zip(user_ids, store.get_many(CONSENT_NS, user_ids))}


def row(user_id: str, consent: Consent) -> tuple[str, str, bytes]:
    consent.updated_at = time.time()
    return (CONSENT_NS, user_id, consent.encode())
