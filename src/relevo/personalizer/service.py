"""Azure Personalizer's v1.0 Rank / Reward / Activate contract on relevo's bandit engine.

Each Rank call is one Decision (decision id = eventId) made by a linear Thompson Sampling
policy over hashed context x action features (``featurize``). Rewards go through the same
RewardJoiner as the engine's own (first reward wins, attribution window = Personalizer's
"reward wait time", default reward when it closes, nothing learned for events created
with ``deferActivation`` until they are activated).

Learning modes (Personalizer's names):
- ``Online``: the learned policy chooses; ``probability`` is its chance of choosing each
  action (Monte-Carlo over posterior draws, see bandits.base).
- ``Apprentice``: the caller's baseline action (the first action, or a slot's
  ``baselineAction``) is served, except with probability ``apprentice_exploration`` when
  the learned policy's choice is; the logged probability is the mixture's, so the learned
  policy's value can be estimated off-policy. After every ``check_every`` rewards the
  SNIPS estimates of the learned policy and of the baseline are compared on the
  apprentice events; when the bootstrap 95% lower bound of (learned - baseline) is above
  zero over at least ``min_events`` events, the mode switches to Online. With
  ``apprentice_exploration`` = 0 the learned policy cannot be evaluated and the switch is
  manual (``PUT /personalizer/v1.0/configurations/service``).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from relevo.bandits.base import Candidates
from relevo.bandits.linear_ts import LinearTS, LinTSConfig
from relevo.bandits.ope import bootstrap_ci
from relevo.bandits.persisted import PersistedPolicy
from relevo.personalizer.featurize import hash_features
from relevo.records import Decision, ScoredItem
from relevo.storage.protocols import DecisionLog, FeatureStore, ModelStore
from relevo.stream.rewards import REWARDS_NS, JoinConfig, Outcome, RewardJoiner, marker_key

POLICY_NAME = "personalizer"
STATE_NS = "personalizer"
USER = "~personalizer"  # Personalizer events carry no user id
MODES = ("Online", "Apprentice")


class PersonalizerError(Exception):
    """A Personalizer-style error: HTTP status, error code, message, target field."""

    def __init__(self, status: int, code: str, message: str, target: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.target = status, code, message, target


def bad(message: str, target: str | None = None, code: str = "BadArgument") -> PersonalizerError:
    return PersonalizerError(400, code, message, target)


@dataclass(frozen=True, slots=True)
class PersonalizerConfig:
    context_dim: int = 16
    action_dim: int = 12
    exploration: float = 0.5
    propensity_samples: int = 200
    reward_wait_s: float = 600.0
    default_reward: float = 0.0
    apprentice_exploration: float = 0.05
    min_events: int = 200
    check_every: int = 50
    max_actions: int = 500
    ledger_size: int = 5_000
    seed: int = 0


@dataclass(slots=True)
class ServiceState:
    learning_mode: str = "Online"
    switched_at: float | None = None
    # apprentice ledger rows: (w_learned, w_baseline, reward) per rewarded apprentice event
    ledger: list[list[float]] = field(default_factory=list)
    rewards_since_check: int = 0
    last_check: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SlotRequest:
    id: str
    baseline: str | None
    features: list
    excluded: tuple[str, ...]


class PersonalizerService:
    def __init__(
        self,
        decisions: DecisionLog,
        features: FeatureStore,
        models: ModelStore,
        config: PersonalizerConfig | None = None,
    ):
        self.config = c = config or PersonalizerConfig()
        self.decisions = decisions
        self.features = features
        bandit = LinearTS(LinTSConfig(
            dim=c.action_dim, context_dim=c.context_dim, exploration=c.exploration,
            propensity_samples=c.propensity_samples,
        ))
        self.policy = PersistedPolicy(bandit, features, models, name=POLICY_NAME)
        self.policy.load()
        self.joiner = RewardJoiner(decisions, features, self.policy, JoinConfig(c.reward_wait_s, c.default_reward),
                                   on_reward=self._on_reward)
        self._lock = threading.Lock()
        self._claim_lock = threading.Lock()
        self._claimed: set[str] = set()
        self.state = self._load_state()

    # -- state ---------------------------------------------------------------------------

    def _load_state(self) -> ServiceState:
        raw = self.features.get(STATE_NS, "service")
        return ServiceState(**orjson.loads(raw)) if raw is not None else ServiceState()

    def _save_state(self) -> None:
        s = self.state
        doc = {"learning_mode": s.learning_mode, "switched_at": s.switched_at, "ledger": s.ledger,
               "rewards_since_check": s.rewards_since_check, "last_check": s.last_check}
        self.features.put(STATE_NS, "service", orjson.dumps(doc))

    def configuration(self) -> dict[str, Any]:
        c = self.config
        return {
            "learningMode": self.state.learning_mode,
            "rewardWaitTime": _duration(c.reward_wait_s),
            "defaultReward": c.default_reward,
            "rewardAggregation": "earliest",
            "explorationPercentage": c.apprentice_exploration if self.state.learning_mode == "Apprentice" else None,
            "modelLastModified": self.policy.version,
            "apprentice": self.state.last_check or None,
        }

    def set_mode(self, mode: str) -> dict[str, Any]:
        if mode not in MODES:
            raise bad(f"learningMode must be one of {', '.join(MODES)}", "learningMode")
        with self._lock:
            if mode != self.state.learning_mode:
                self.state.learning_mode = mode
                self.state.switched_at = time.time()
                self._save_state()
        return self.configuration()

    # -- rank ------------------------------------------------------------------------------

    def rank(self, body: dict[str, Any]) -> dict[str, Any]:
        actions = _actions(body.get("actions"), self.config.max_actions)
        ids = [a["id"] for a in actions]
        excluded = _excluded(body.get("excludedActions"), ids, "excludedActions")
        eligible = [i for i in ids if i not in excluded]
        if not eligible:
            raise bad("every action is excluded; at least one must be rankable", "excludedActions")
        context = _context(body.get("contextFeatures"))
        event_id = self._new_event_id(body.get("eventId"))
        try:
            slot = SlotRequest("", ids[0] if ids[0] in eligible else eligible[0], [], tuple(excluded))
            choice = self._choose(event_id, context, actions, eligible, slot, 0)
            self._log(event_id, [choice], body, bool(body.get("deferActivation", False)))
        finally:
            self._release(event_id)
        ranking = [{"id": a, "probability": round(choice["pmf"].get(a, 0.0), 6)} for a in choice["order"]]
        ranking += [{"id": a, "probability": 0.0} for a in ids if a in excluded]
        return {"ranking": ranking, "eventId": event_id, "rewardActionId": choice["action"]}

    def multislot_rank(self, body: dict[str, Any]) -> dict[str, Any]:
        actions = _actions(body.get("actions"), self.config.max_actions)
        ids = [a["id"] for a in actions]
        slots = _slots(body.get("slots"), ids)
        if len(slots) > len(ids):
            raise bad("there are more slots than actions", "slots")
        context = _context(body.get("contextFeatures"))
        event_id = self._new_event_id(body.get("eventId"))
        try:
            used: set[str] = set()
            choices = []
            for position, slot in enumerate(slots):
                eligible = [i for i in ids if i not in used and i not in slot.excluded]
                if not eligible:
                    raise bad(f"no action is left for slot {slot.id!r}", "slots")
                choice = self._choose(event_id, context + slot.features + [{"_slot": slot.id}], actions, eligible,
                                      slot, position)
                used.add(choice["action"])
                choices.append(choice)
            self._log(event_id, choices, body, bool(body.get("deferActivation", False)), slots=slots)
        finally:
            self._release(event_id)
        return {"slots": [{"id": s.id, "rewardActionId": c["action"]} for s, c in zip(slots, choices)],
                "eventId": event_id}

    def _new_event_id(self, given: Any) -> str:
        """A fresh id, or the caller's, claimed until its decision is logged (``_release``):
        two concurrent ranks with one eventId cannot both pass the check."""
        if given is None:
            return uuid.uuid4().hex
        if not isinstance(given, str) or not 1 <= len(given) <= 256:
            raise bad("eventId must be a string of 1 to 256 characters", "eventId")
        with self._claim_lock:
            if given in self._claimed or self.decisions.get(given) is not None:
                raise PersonalizerError(409, "Conflict", f"eventId {given!r} was already used", "eventId")
            self._claimed.add(given)
        return given

    def _release(self, event_id: str) -> None:
        with self._claim_lock:
            self._claimed.discard(event_id)

    def _choose(self, event_id, context, actions, eligible, slot: SlotRequest, position: int) -> dict[str, Any]:
        c = self.config
        ctx = hash_features(context, c.context_dim, bias=True)
        by_id = {a["id"]: a for a in actions}
        rows = np.vstack([hash_features([{"_id": i}, *by_id[i].get("features", [])], c.action_dim)
                          for i in eligible])
        seed = _seed(c.seed, event_id, position)
        slate = self.policy.policy.select(ctx, Candidates(eligible, rows), len(eligible), seed, all_first=True)
        learned_pmf = dict(zip(eligible, slate.first.tolist()))
        learned = slate.arms[0]
        mode = self.state.learning_mode
        baseline = slot.baseline if slot.baseline in learned_pmf else eligible[0]
        if mode == "Apprentice":
            eps = c.apprentice_exploration
            explore = np.random.default_rng(seed ^ 0x5EED).random() < eps
            action = learned if explore else baseline
            pmf = {a: eps * p + (1 - eps) * (a == baseline) for a, p in learned_pmf.items()}
        else:
            action, pmf = learned, learned_pmf
        order = [action] + [a for a in slate.arms if a != action]
        row = slate.features[slate.arms.index(action)]
        return {"action": action, "pmf": pmf, "order": order, "row": row, "mode": mode, "baseline": baseline,
                "p_learned": learned_pmf[action], "p_logged": pmf[action], "explored": bool(action != slate.arms[0]
                or slate.explored[0])}

    def _log(self, event_id, choices, body, deferred: bool, slots: list[SlotRequest] | None = None) -> None:
        decision = Decision(
            decision_id=event_id,
            user_id=USER,
            policy=POLICY_NAME,
            policy_version=self.policy.version,
            created_at=time.time(),
            items=[ScoredItem(ch["action"], 0.0, round(ch["p_logged"], 6), ch["explored"], []) for ch in choices],
            features=[ch["row"].round(6).tolist() for ch in choices],
            context={
                "personalizer": {
                    "mode": choices[0]["mode"],
                    "slots": [s.id for s in slots] if slots else None,
                    "baseline": [ch["baseline"] for ch in choices],
                    "p_learned": [round(ch["p_learned"], 6) for ch in choices],
                    "request": {k: body.get(k) for k in ("contextFeatures", "actions", "excludedActions", "slots")
                                if body.get(k) is not None},
                }
            },
            tier="personalizer",
            seed=_seed(self.config.seed, event_id, 0),
            activated=not deferred,
        )
        self.decisions.append(decision)

    # -- reward / activate -------------------------------------------------------------------

    def check_slots(self, event_id: str, slot_ids: list[str]) -> None:
        """Refuse a multi-slot reward naming a slot the event does not have, before any is learned."""
        slots = self._decision(event_id).context.get("personalizer", {}).get("slots") or []
        for sid in slot_ids:
            if sid not in slots:
                raise bad(f"slot {sid!r} was not part of event {event_id!r}", "slotId")

    def reward(self, event_id: str, value: Any, slot_id: str | None = None) -> str:
        reward = reward_value(value)
        decision = self._decision(event_id)
        slots = decision.context.get("personalizer", {}).get("slots")
        if slot_id is None:
            if slots:
                raise bad("this event was ranked with slots: use the multislot reward endpoint", "eventId")
            position = 0
        else:
            if not slots or slot_id not in slots:
                raise bad(f"slot {slot_id!r} was not part of event {event_id!r}", "slotId")
            position = slots.index(slot_id)
        outcome = Outcome(event_id, decision.items[position].item_id, reward, time.time(), "feedback")
        joined = self.joiner.record([outcome])
        return joined.status[0]

    def activate(self, event_id: str) -> None:
        decision = self._decision(event_id)
        if not decision.activated:
            decision.activated = True
            self.decisions.append(decision)
            self.joiner.forget([event_id])

    def _decision(self, event_id: str) -> Decision:
        decision = self.decisions.get(event_id)
        if decision is None or decision.policy != POLICY_NAME:
            raise PersonalizerError(404, "EventNotFound", f"no ranked event {event_id!r}", "eventId")
        return decision

    # -- offline evaluation ----------------------------------------------------------------

    def evaluate(self, body: dict[str, Any]) -> dict[str, Any]:
        """Compare policies on logged single-slot events with final rewards: the policy that
        served them (its mean reward), the baseline (first action) and each requested linear
        TS configuration, trained progressively on the events in time order (each event is
        scored before it is learned). IPS and SNIPS with bootstrap 95% intervals."""
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise bad("name is required", "name")
        start, end = _time(body.get("startTime"), "startTime", 0.0), _time(body.get("endTime"), "endTime", time.time())
        if end <= start:
            raise bad("endTime must be after startTime", "endTime")
        specs = body.get("policies", [])
        if not isinstance(specs, list) or len(specs) > 10:
            raise bad("policies must be a list of at most 10 policies", "policies")
        parsed = [parse_policy(p, i) for i, p in enumerate(specs)]
        events = []
        for d in self.decisions.between(start, end, 100_000):
            info = d.context.get("personalizer")
            if d.policy != POLICY_NAME or not d.activated or not info or info.get("slots"):
                continue
            if d.rewards is not None:  # settled: the final reward is in the decision
                if d.rewards and d.rewards[0] is not None:
                    events.append((d, info, float(d.rewards[0])))
                continue
            raw = self.features.get(REWARDS_NS, marker_key(d.decision_id, d.items[0].item_id))
            if raw is not None:  # still in its window, already rewarded
                events.append((d, info, float(raw)))
        if not events:
            raise PersonalizerError(422, "NoEvents", "no rewarded single-slot events in this time range", "startTime")
        r = np.array([e[2] for e in events])
        p = np.array([max(e[0].items[0].propensity, 1e-9) for e in events])
        base = np.array([float(e[0].items[0].item_id == e[1]["baseline"][0]) for e in events])
        results = [_policy_result("online (logged)", "", np.ones_like(r), r),
                   _policy_result("baseline (first action)", "", base / p, r)]
        for (pname, args), spec in zip(parsed, specs):
            results.append(_policy_result(pname, spec.get("arguments") or "", self._replay(events, args) / p, r))
        out = {"id": uuid.uuid4().hex, "name": name, "status": "Succeeded", "startTime": start, "endTime": end,
               "events": len(events), "policyResults": results}
        self.features.put(STATE_NS, f"evaluation:{out['id']}", orjson.dumps(out))
        return out

    def get_evaluation(self, evaluation_id: str) -> dict[str, Any]:
        raw = self.features.get(STATE_NS, f"evaluation:{evaluation_id}")
        if raw is None:
            raise PersonalizerError(404, "EvaluationNotFound", f"no evaluation {evaluation_id!r}", "evaluationId")
        return orjson.loads(raw)

    def _replay(self, events, args: dict[str, float]) -> np.ndarray:
        """pi(logged action | context) for a fresh linear TS trained progressively."""
        c = self.config
        policy = LinearTS(LinTSConfig(dim=c.action_dim, context_dim=c.context_dim,
                                      exploration=args.get("exploration", c.exploration), lam=args.get("lam", 1.0),
                                      propensity_samples=100))
        out = np.zeros(len(events))
        for k, (d, info, reward) in enumerate(events):
            req = info["request"]
            actions = req["actions"]
            excluded = set(req.get("excludedActions") or [])
            eligible = [a["id"] for a in actions if a["id"] not in excluded]
            ctx = hash_features(req.get("contextFeatures") or [], c.context_dim, bias=True)
            by_id = {a["id"]: a for a in actions}
            rows = np.vstack([hash_features([{"_id": i}, *by_id[i].get("features", [])], c.action_dim)
                              for i in eligible])
            slate = policy.select(ctx, Candidates(eligible, rows), 1, _seed(c.seed, d.decision_id, 99), all_first=True)
            logged = d.items[0].item_id
            out[k] = slate.first[eligible.index(logged)] if logged in eligible else 0.0
            policy.learn([logged], np.asarray(d.features[:1]), [reward])
        return out

    # -- apprentice evaluation -------------------------------------------------------------

    def _on_reward(self, decision: Decision, position: int, reward: float) -> None:
        info = decision.context.get("personalizer", {})
        if info.get("mode") != "Apprentice":
            return
        logged = decision.items[position]
        w_learned = info["p_learned"][position] / max(logged.propensity, 1e-9)
        w_base = (1.0 if logged.item_id == info["baseline"][position] else 0.0) / max(logged.propensity, 1e-9)
        with self._lock:
            s = self.state
            s.ledger.append([w_learned, w_base, reward])
            del s.ledger[: -self.config.ledger_size]
            s.rewards_since_check += 1
            if s.rewards_since_check >= self.config.check_every:
                # persisted at each check (not each reward): a crash loses < check_every rows
                s.rewards_since_check = 0
                self._check_switch()
                self._save_state()

    def _check_switch(self) -> None:
        s = self.state
        rows = np.asarray(s.ledger, dtype=np.float64)
        if len(rows) == 0:
            return
        w_l, w_b, r = rows[:, 0], rows[:, 1], rows[:, 2]

        def diff(data: np.ndarray) -> np.ndarray:  # (b, n, 3) resamples -> (b,)
            wl, wb, rr = data[..., 0], data[..., 1], data[..., 2]
            return _snips(wl, rr) - _snips(wb, rr)

        est = float(diff(rows[None])[0])
        low, high = bootstrap_ci(rows, diff, n_boot=500, alpha=0.05, seed=len(rows))
        s.last_check = {"events": int(len(rows)), "learned": round(float(_snips(w_l, r)), 6),
                        "baseline": round(float(_snips(w_b, r)), 6), "difference": round(est, 6),
                        "ci95": [round(float(low), 6), round(float(high), 6)], "at": time.time()}
        if len(rows) >= self.config.min_events and low > 0 and self.config.apprentice_exploration > 0:
            s.learning_mode = "Online"
            s.switched_at = time.time()
            s.last_check["switched"] = True


def parse_policy(spec: dict[str, Any], i: int) -> tuple[str, dict[str, float]]:
    """An evaluation policy: ``{"name", "arguments": "exploration=0.2 lam=2"}`` (relevo's
    linear TS settings, not VW command lines)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise bad(f"policies[{i}] must have a name", f"policies[{i}].name")
    args: dict[str, float] = {}
    for token in str(spec.get("arguments") or "").split():
        key, _, value = token.partition("=")
        if key not in ("exploration", "lam") or not value:
            raise bad(f"policies[{i}].arguments: use exploration=<v> and lam=<v>, got {token!r}",
                      f"policies[{i}].arguments")
        try:
            args[key] = float(value)
        except ValueError:
            raise bad(f"policies[{i}].arguments: {token!r} is not a number", f"policies[{i}].arguments") from None
        if not math.isfinite(args[key]) or args[key] < 0 or (key == "lam" and args[key] == 0):
            raise bad(f"policies[{i}].arguments: {token!r} is out of range", f"policies[{i}].arguments")
    return spec["name"], args


def _snips(w: np.ndarray, r: np.ndarray) -> np.ndarray | float:
    """Self-normalised IPS over the last axis (0 where no weight)."""
    total = w.sum(axis=-1)
    return np.where(total > 0, (w * r).sum(axis=-1) / np.where(total > 0, total, 1.0), 0.0)


def _policy_result(name: str, arguments: str, w: np.ndarray, r: np.ndarray) -> dict[str, Any]:
    rows = np.column_stack([w, r])
    ips_low, ips_high = bootstrap_ci(rows, lambda b: (b[..., 0] * b[..., 1]).mean(axis=-1), n_boot=500, seed=1)
    sn_low, sn_high = bootstrap_ci(rows, lambda b: _snips(b[..., 0], b[..., 1]), n_boot=500, seed=1)
    return {
        "name": name, "arguments": arguments,
        "ips": {"value": round(float((w * r).mean()), 6), "ci95": [round(ips_low, 6), round(ips_high, 6)]},
        "snips": {"value": round(float(_snips(w, r)), 6), "ci95": [round(sn_low, 6), round(sn_high, 6)]},
        "effectiveSampleSize": round(float(w.sum() ** 2 / max((w * w).sum(), 1e-12)), 1),
    }


def _time(value: Any, target: str, default: float) -> float:
    """Epoch seconds, or an ISO 8601 timestamp as Personalizer sends them."""
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        from datetime import datetime, timezone

        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise bad(f"{target} is not an ISO 8601 time", target) from None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()
    raise bad(f"{target} must be an ISO 8601 time or epoch seconds", target)


def _seed(base: int, event_id: str, position: int) -> int:
    digest = hashlib.blake2b(f"{base}\x00{event_id}\x00{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _duration(seconds: float) -> str:
    """ISO 8601 duration, as Personalizer's configuration reports rewardWaitTime."""
    whole = int(seconds)
    return f"PT{whole // 3600}H{(whole % 3600) // 60}M{whole % 60}S"


def reward_value(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise bad("value must be a finite number", "value")
    if not -1.0 <= float(value) <= 1.0:  # one caller must not swamp the shared model
        raise bad("value must be between -1 and 1", "value")
    return float(value)


def _context(value: Any) -> list:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise bad("contextFeatures must be a list of JSON objects", "contextFeatures")
    _check_features(value, "contextFeatures")
    return value


def _check_features(value: Any, target: str) -> None:
    try:
        hash_features(value, 8)
    except ValueError as exc:
        raise bad(f"{target}: {exc}", target) from None


def _actions(value: Any, max_actions: int) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise bad("actions must be a non-empty list", "actions")
    if len(value) > max_actions:
        raise bad(f"at most {max_actions} actions per request", "actions")
    seen: set[str] = set()
    for i, action in enumerate(value):
        if not isinstance(action, dict) or not isinstance(action.get("id"), str) or not action["id"]:
            raise bad(f"actions[{i}] must be an object with a non-empty string id", f"actions[{i}].id")
        if action["id"] in seen:
            raise bad(f"action id {action['id']!r} is repeated", f"actions[{i}].id")
        seen.add(action["id"])
        feats = action.get("features", [])
        if not isinstance(feats, list) or not all(isinstance(f, dict) for f in feats):
            raise bad(f"actions[{i}].features must be a list of JSON objects", f"actions[{i}].features")
        _check_features(feats, f"actions[{i}].features")
    return value


def _excluded(value: Any, ids: list[str], target: str) -> set[str]:
    if value is None:
        return set()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad(f"{target} must be a list of action ids", target)
    unknown = set(value) - set(ids)
    if unknown:
        raise bad(f"{target} names unknown actions: {', '.join(sorted(unknown))}", target)
    return set(value)


def _slots(value: Any, ids: list[str]) -> list[SlotRequest]:
    if not isinstance(value, list) or not value:
        raise bad("slots must be a non-empty list", "slots")
    out, seen = [], set()
    for i, slot in enumerate(value):
        if not isinstance(slot, dict) or not isinstance(slot.get("id"), str) or not slot["id"]:
            raise bad(f"slots[{i}] must be an object with a non-empty string id", f"slots[{i}].id")
        if slot["id"] in seen:
            raise bad(f"slot id {slot['id']!r} is repeated", f"slots[{i}].id")
        seen.add(slot["id"])
        baseline = slot.get("baselineAction")
        if baseline is None or baseline not in ids:
            raise bad(f"slots[{i}].baselineAction must name one of the actions", f"slots[{i}].baselineAction")
        feats = slot.get("positionFeatures", [])
        if not isinstance(feats, list) or not all(isinstance(f, dict) for f in feats):
            raise bad(f"slots[{i}].positionFeatures must be a list of JSON objects", f"slots[{i}].positionFeatures")
        _check_features(feats, f"slots[{i}].positionFeatures")
        excluded = _excluded(slot.get("excludedActions"), ids, f"slots[{i}].excludedActions")
        out.append(SlotRequest(slot["id"], baseline, feats, tuple(sorted(excluded))))
    return out
