"""What an online experiment is: its variants, how traffic is split, what it measures.

An ``Experiment`` is configuration only; what it has learned lives in per-variant
``VariantStats`` (``relevo.experiments.analysis``). All three records validate on
construction; ``Experiment.from_dict`` also checks structure and types (unknown keys,
wrong types) and raises ``ValueError`` whose message starts with the offending field's
path, e.g. ``variants[1].weight: must be a finite number > 0, got -1``.

Allocation modes:

- ``fixed``: traffic follows the normalised variant weights (a classic A/B test).
- ``thompson``: each variant gets the posterior probability that it is best.
- ``top_two``: top-two Thompson sampling (Russo 2016, beta = 0.5): half the traffic to
  the posterior leader, half to its challengers; faster at *identifying* the best arm.

Adaptive modes ignore ``weight``. ``salt`` re-randomises which units land where: two
experiments (or two runs of one) with different salts assign independently.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

Allocation = Literal["fixed", "thompson", "top_two"]
Status = Literal["running", "stopped"]
Direction = Literal["max", "min"]

ALLOCATIONS: tuple[str, ...] = ("fixed", "thompson", "top_two")
STATUSES: tuple[str, ...] = ("running", "stopped")
DIRECTIONS: tuple[str, ...] = ("max", "min")
NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
MIN_VARIANTS = 2
MAX_VARIANTS = 20
MAX_GUARDRAILS = 16
MAX_CONFIG_KEYS = 32
MAX_CONFIG_BYTES = 4096
MAX_SALT_LEN = 128
MAX_MIN_SAMPLES = 1_000_000_000

_NAME = re.compile(NAME_PATTERN)


def _check_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(f"{where}: must match {NAME_PATTERN}, got {value!r}")
    return value


def _check_number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{where}: must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{where}: must be finite, got {value}")
    return value


def _check_choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise ValueError(f"{where}: unknown {value!r}; expected one of {', '.join(choices)}")
    return value


def _check_keys(d: Any, allowed: tuple[str, ...], required: tuple[str, ...], what: str) -> Mapping:
    """Structure check of one object; errors name the key (``what`` names a non-object)."""
    if not isinstance(d, Mapping):
        raise ValueError(f"{what}: must be an object, got {type(d).__name__}")
    for key in d:
        if key not in allowed:
            raise ValueError(f"{str(key)[:64]}: unknown field; expected some of {', '.join(allowed)}")
    for key in required:
        if key not in d:
            raise ValueError(f"{key}: field required")
    return d


def _check_list(value: Any, where: str) -> list:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{where}: must be a list, got {type(value).__name__}")
    return list(value)


def _prefixed(where: str, exc: ValueError) -> ValueError:
    """Re-raise a nested record's error under its path: ``weight: ...`` -> ``variants[1].weight: ...``."""
    text = str(exc)
    if text.startswith(("variant:", "guardrail:")):  # the record itself is not an object
        return ValueError(f"{where}{text[text.index(':'):]}")
    return ValueError(f"{where}.{text}")


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm of the experiment. ``weight``: its relative share under ``fixed`` allocation
    (> 0). ``config``: opaque overrides the engine applies to requests in this variant,
    e.g. ``{"policy": "beta_ts", "exploration": 0.1}``; must be JSON (at most 32 keys,
    4 KiB serialised) and is stored as a deep copy."""

    name: str
    weight: float = 1.0
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_name(self.name, "name")
        weight = _check_number(self.weight, "weight")
        if weight <= 0:
            raise ValueError(f"weight: must be a finite number > 0, got {weight:g}")
        object.__setattr__(self, "weight", weight)
        if not isinstance(self.config, Mapping):
            raise ValueError(f"config: must be an object, got {type(self.config).__name__}")
        if len(self.config) > MAX_CONFIG_KEYS:
            raise ValueError(f"config: has {len(self.config)} keys; at most {MAX_CONFIG_KEYS} are allowed")
        if not all(isinstance(k, str) for k in self.config):
            raise ValueError("config: keys must be strings")
        try:
            text = json.dumps(dict(self.config), allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"config: must be JSON with finite numbers ({exc})") from None
        if len(text.encode()) > MAX_CONFIG_BYTES:
            raise ValueError(f"config: is {len(text.encode())} bytes as JSON; at most {MAX_CONFIG_BYTES}")
        object.__setattr__(self, "config", json.loads(text))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, "config": json.loads(json.dumps(self.config))}

    @classmethod
    def from_dict(cls, d: Any) -> "Variant":
        d = _check_keys(d, ("name", "weight", "config"), ("name",), "variant")
        return cls(name=d["name"], weight=d.get("weight", 1.0), config=d.get("config", {}))


@dataclass(frozen=True, slots=True)
class Guardrail:
    """A metric that must not regress, judged per variant on its mean: ``max`` means the
    mean must stay at or below ``threshold`` (latency ms, error rate), ``min`` at or above
    it (e.g. revenue per visit). How "breached" is decided is in ``analysis``."""

    metric: str
    direction: Direction
    threshold: float

    def __post_init__(self) -> None:
        _check_name(self.metric, "metric")
        _check_choice(self.direction, DIRECTIONS, "direction")
        object.__setattr__(self, "threshold", _check_number(self.threshold, "threshold"))

    def violated_by(self, value: float) -> bool:
        """True when ``value`` lies on the wrong side of the threshold (ties are fine)."""
        return value > self.threshold if self.direction == "max" else value < self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "direction": self.direction, "threshold": self.threshold}

    @classmethod
    def from_dict(cls, d: Any) -> "Guardrail":
        keys = ("metric", "direction", "threshold")
        d = _check_keys(d, keys, keys, "guardrail")
        return cls(metric=d["metric"], direction=d["direction"], threshold=d["threshold"])


_FIELDS = (
    "id",
    "variants",
    "allocation",
    "metric",
    "guardrails",
    "salt",
    "min_samples_per_variant",
    "status",
    "created_at",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Experiment:
    """An online experiment. The first variant is the control (lifts are measured against
    it). ``metric``: the reward metric analysed and, for adaptive allocation, learned from.
    ``min_samples_per_variant``: outcomes a variant needs before adaptive allocation may
    shrink it below its warm-up floor (see ``allocation``) and before results are called
    ``ready``. ``created_at``: epoch seconds."""

    id: str
    variants: tuple[Variant, ...]
    allocation: Allocation = "fixed"
    salt: str
    created_at: float
    metric: str = "reward"
    guardrails: tuple[Guardrail, ...] = ()
    min_samples_per_variant: int = 100
    status: Status = "running"

    def __post_init__(self) -> None:
        _check_name(self.id, "id")
        variants = tuple(_check_list(self.variants, "variants"))
        if not MIN_VARIANTS <= len(variants) <= MAX_VARIANTS:
            raise ValueError(f"variants: need {MIN_VARIANTS} to {MAX_VARIANTS} variants, got {len(variants)}")
        seen: set[str] = set()
        for i, v in enumerate(variants):
            if not isinstance(v, Variant):
                raise ValueError(f"variants[{i}]: must be a Variant, got {type(v).__name__}")
            if v.name in seen:
                raise ValueError(f"variants[{i}].name: duplicate variant name {v.name!r}")
            seen.add(v.name)
        object.__setattr__(self, "variants", variants)
        _check_choice(self.allocation, ALLOCATIONS, "allocation")
        _check_name(self.metric, "metric")
        guardrails = tuple(_check_list(self.guardrails, "guardrails"))
        if len(guardrails) > MAX_GUARDRAILS:
            raise ValueError(f"guardrails: at most {MAX_GUARDRAILS} are allowed, got {len(guardrails)}")
        rules: set[tuple[str, str]] = set()
        for i, g in enumerate(guardrails):
            if not isinstance(g, Guardrail):
                raise ValueError(f"guardrails[{i}]: must be a Guardrail, got {type(g).__name__}")
            if (g.metric, g.direction) in rules:
                raise ValueError(f"guardrails[{i}]: duplicate guardrail {g.direction} {g.metric!r}")
            rules.add((g.metric, g.direction))
        object.__setattr__(self, "guardrails", guardrails)
        if not isinstance(self.salt, str) or not 1 <= len(self.salt) <= MAX_SALT_LEN:
            raise ValueError(f"salt: must be a string of 1 to {MAX_SALT_LEN} characters")
        m = self.min_samples_per_variant
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 0 <= m <= MAX_MIN_SAMPLES:
            raise ValueError(
                f"min_samples_per_variant: must be an integer in [0, {MAX_MIN_SAMPLES}], got {m!r}"
            )
        object.__setattr__(self, "min_samples_per_variant", int(m))
        _check_choice(self.status, STATUSES, "status")
        created = _check_number(self.created_at, "created_at")
        if created < 0:
            raise ValueError(f"created_at: must be epoch seconds >= 0, got {created:g}")
        object.__setattr__(self, "created_at", created)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variants)

    @property
    def control(self) -> Variant:
        return self.variants[0]

    @property
    def adaptive(self) -> bool:
        return self.allocation != "fixed"

    def weights(self) -> np.ndarray:
        """Normalised fixed-allocation weights, shape (K,) float64, summing to 1."""
        w = np.array([v.weight for v in self.variants], dtype=np.float64)
        return w / w.sum()

    def index(self, name: str) -> int:
        """Position of variant ``name``; ``KeyError`` if there is none."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"experiment {self.id!r} has no variant {name!r}") from None

    def stopped(self) -> "Experiment":
        return replace(self, status="stopped")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; ``from_dict(to_dict())`` gives back an equal experiment."""
        return {
            "id": self.id,
            "variants": [v.to_dict() for v in self.variants],
            "allocation": self.allocation,
            "metric": self.metric,
            "guardrails": [g.to_dict() for g in self.guardrails],
            "salt": self.salt,
            "min_samples_per_variant": self.min_samples_per_variant,
            "status": self.status,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, d: Any, *, now: float | None = None) -> "Experiment":
        """Parse and validate (e.g. a ``POST /v1/experiments`` body). Required: ``id`` and
        ``variants``. A missing ``salt`` gets a fresh random one (so a re-created
        experiment does not reuse the old buckets); a missing ``created_at`` gets ``now``
        (default: the current time). Unknown fields are rejected."""
        d = _check_keys(d, _FIELDS, ("id", "variants"), "experiment")
        variants = []
        for i, raw in enumerate(_check_list(d["variants"], "variants")):
            try:
                variants.append(Variant.from_dict(raw))
            except ValueError as exc:
                raise _prefixed(f"variants[{i}]", exc) from None
        guardrails = []
        for i, raw in enumerate(_check_list(d.get("guardrails", []), "guardrails")):
            try:
                guardrails.append(Guardrail.from_dict(raw))
            except ValueError as exc:
                raise _prefixed(f"guardrails[{i}]", exc) from None
        return cls(
            id=d["id"],
            variants=tuple(variants),
            allocation=d.get("allocation", "fixed"),
            metric=d.get("metric", "reward"),
            guardrails=tuple(guardrails),
            salt=d["salt"] if "salt" in d else secrets.token_hex(8),
            min_samples_per_variant=d.get("min_samples_per_variant", 100),
            status=d.get("status", "running"),
            created_at=d["created_at"] if "created_at" in d else (time.time() if now is None else now),
        )
