"""Per-user consent, stored with read-your-writes in the FeatureStore (namespace
``consent``), one choice per purpose:

| purpose | when granted | when refused |
|---|---|---|
| ``personalization`` | the user's events rank recommendations for them | non-profiled answers: popularity and the request's context/filters only; no per-user state is computed or kept |
| ``profiling`` | a cross-session profile (long-term vector, counters, tag affinities) is kept | only the current session is used and kept |
| ``emotion`` | review-text affect and behavioural frustration are computed and used | neither is computed nor stored (affect already stored is deleted) |
| ``llm`` | the user's context may be sent to an LLM (already PII-redacted) | no LLM call carries their data |

A user who has not chosen gets the deployment's defaults (``PrivacySettings``:
personalization and profiling on, emotion and LLM off unless the deployer's legal basis
says otherwise). A recorded choice always wins over a default.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields

import orjson

from relevo.context.state import CONSENT_NS
from relevo.storage.protocols import FeatureStore

PURPOSES = ("personalization", "profiling", "emotion", "llm")


@dataclass(frozen=True, slots=True)
class ConsentDefaults:
    personalization: bool = True
    profiling: bool = True
    emotion: bool = False
    llm: bool = False


@dataclass(slots=True)
class Consent:
    """Recorded choices: None where the user has not chosen (the default applies)."""

    personalization: bool | None = None
    profiling: bool | None = None
    emotion: bool | None = None
    llm: bool | None = None
    updated_at: float = 0.0

    def allows(self, purpose: str, defaults: ConsentDefaults) -> bool:
        choice = getattr(self, purpose)
        return bool(getattr(defaults, purpose)) if choice is None else bool(choice)

    def resolved(self, defaults: ConsentDefaults) -> dict[str, bool]:
        return {p: self.allows(p, defaults) for p in PURPOSES}

    def filled(self, defaults: ConsentDefaults) -> "Consent":
        """The consent in force: every purpose a bool (defaults where no choice was made)."""
        return Consent(**self.resolved(defaults), updated_at=self.updated_at)

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes | None) -> "Consent":
        if raw is None:
            return cls()
        data = orjson.loads(raw)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def read(store: FeatureStore, user_id: str) -> Consent:
    return Consent.decode(store.get(CONSENT_NS, user_id))


def read_many(store: FeatureStore, user_ids: list[str]) -> dict[str, Consent]:
    return {u: Consent.decode(raw) for u, raw in zip(user_ids, store.get_many(CONSENT_NS, user_ids))}


def row(user_id: str, consent: Consent) -> tuple[str, str, bytes]:
    consent.updated_at = time.time()
    return (CONSENT_NS, user_id, consent.encode())
