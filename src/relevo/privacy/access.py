"""Data access and portability (GDPR Art. 15 / 20) and the per-decision audit record.

``export_user`` gathers everything relevo stores about one user into one JSON document
(format ``relevo-export/1``): their events as received, the derived profile (vectors,
session, counters, affect if it was consented), preferences, consent (recorded choices
and what is in force), and every decision made for them with its audit record. The
vectors are included because they are personal data derived from the user's behaviour,
even if they mean little to a person.

``audit_record`` is the view of a Decision an auditor needs and nothing more: policy and
model versions, tier, the names (never the values) of the features the model used, each
shown item with its propensity, whether it was explored and the reasons shown, the
consent in force, the fallback (if one answered), the experiment arm, and, once its
attribution window closed, the rewards. The request's free-form ``context`` is left out.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import orjson

from relevo.context import consent as consent_registry
from relevo.context.state import PREFERENCES_NS, USERS_NS, UserState
from relevo.records import Decision
from relevo.storage.protocols import DecisionLog, EventLog, FeatureStore
from relevo.stream.rewards import REWARDS_NS, marker_key

EXPORT_FORMAT = "relevo-export/1"


def audit_record(decision: Decision, *, model: str, retention_days: float) -> dict[str, Any]:
    return {
        "decision_id": decision.decision_id,
        "user_id": decision.user_id,
        "created_at": decision.created_at,
        "expires_at": decision.created_at + retention_days * 86400.0,
        "tier": decision.tier,
        "tier_reason": decision.tier_reason,
        "policy": decision.policy,
        "policy_version": decision.policy_version,
        "ranker_version": decision.ranker_version,
        "llm": decision.llm,  # use, backend, source, fallback reason, the redacted prompt and the output
        "model": model,
        "features_used": list(decision.feature_names),
        "items": [
            {"item_id": s.item_id, "position": k, "propensity": s.propensity, "explored": s.explored,
             "reasons": list(s.reasons)}
            for k, s in enumerate(decision.items)
        ],
        "consent": decision.consent,
        "fallback": decision.fallback,
        "experiment": {"id": decision.experiment, "variant": decision.variant} if decision.experiment else None,
        "activated": decision.activated,
        "rewards": decision.rewards,
        "seed": decision.seed,
    }


def _profile(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    state = UserState.decode(raw)

    def vec(v):
        return None if v is None else np.round(np.asarray(v, dtype=np.float64), 6).tolist()

    return {
        "long_term_vector": vec(state.vector),
        "session_vector": vec(state.session_vector),
        "session": {"started": state.session_started, "last": state.session_last, "events": state.session_events,
                    "recent_items": state.recent},
        "seen_items": state.seen,
        "counters": state.counters,
        "tag_affinity": state.tag_affinity,
        "affect": state.affect.to_dict() if state.affect is not None else None,
        "abandoned_sessions": state.abandoned_sessions,
        "event_time": state.event_time,
        "updated_at": state.updated_at,
    }


def export_user(
    user_id: str,
    events: EventLog,
    features: FeatureStore,
    decisions: DecisionLog,
    defaults: consent_registry.ConsentDefaults,
    *,
    model: str,
    retention_days: float,
) -> dict[str, Any]:
    consent = consent_registry.read(features, user_id)
    prefs = features.get(PREFERENCES_NS, user_id)
    made = sorted(decisions.for_user(user_id, limit=1_000_000), key=lambda d: d.created_at)
    logged = events.for_user(user_id)
    # rewards of decisions still inside their attribution window live in reward markers
    open_keys = [(d, k, marker_key(d.decision_id, item.item_id)) for d in made if d.rewards is None
                 for k, item in enumerate(d.items)]
    marked = features.get_many(REWARDS_NS, [key for _, _, key in open_keys]) if open_keys else []
    pending: dict[str, list] = {}
    for (d, k, _), raw in zip(open_keys, marked):
        pending.setdefault(d.decision_id, [None] * len(d.items))[k] = float(raw) if raw is not None else None
    return {
        "format": EXPORT_FORMAT,
        "user_id": user_id,
        "exported_at": time.time(),
        "events": [e.model_dump(mode="json", exclude_none=True) for e in logged],
        "profile": _profile(features.get(USERS_NS, user_id)),
        "preferences": orjson.loads(prefs) if prefs is not None else None,
        "consent": {
            "recorded": {p: getattr(consent, p) for p in consent_registry.PURPOSES},
            "in_force": consent.resolved(defaults),
            "updated_at": consent.updated_at or None,
        },
        "decisions": [
            {**audit_record(d, model=model, retention_days=retention_days),
             "context": d.context,  # what the application sent with the request
             "rewards": d.rewards if d.rewards is not None else pending.get(d.decision_id)}
            for d in made
        ],
        "counts": {"events": len(logged), "decisions": len(made)},
    }
