"""Settings read from the environment, once, by the composition root.

Every variable is a typed field (pydantic-settings): a flag that is not a boolean, a float where
an integer belongs or an unknown log level stops start-up with a message naming the variable.
With no variables set everything runs on embedded defaults in a local data folder: a SQLite
database, a filesystem Celery broker and a generated Fernet key file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Json,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from writeback.domain.errors import ConfigurationRefused
from writeback.domain.retry import RetryPolicy
from writeback.domain.site_url import HostPolicy

# Redis redelivers any message not acked within this many seconds; a step's run time must stay
# well under it (Celery documents the Redis visibility timeout's redelivery).
DEFAULT_VISIBILITY_TIMEOUT = 3600


class ConfigError(ValueError):
    """A setting is missing or malformed."""


def _comma_list(raw: object) -> object:
    if isinstance(raw, str):
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    return raw


CommaList = Annotated[tuple[str, ...], BeforeValidator(_comma_list)]
_DEFAULT = RetryPolicy()


class Environment(BaseModel):
    """The variables, by their names in the environment; empty means unset."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    data_dir: Path = Field(Path(".writeback"), alias="WRITEBACK_DATA_DIR")
    database_url: str | None = Field(None, alias="DATABASE_URL")
    broker_url: str = Field("filesystem://", alias="CELERY_BROKER_URL")
    redis_url: str | None = Field(None, alias="WRITEBACK_REDIS_URL", pattern=r"^rediss?://")
    secret_keys: CommaList = Field((), alias="WRITEBACK_SECRET_KEYS")
    anthropic_api_key: str | None = Field(None, alias="ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = Field(None, alias="ANTHROPIC_BASE_URL")
    anthropic_model: str = Field("claude-sonnet-4-6", alias="WRITEBACK_ANTHROPIC_MODEL")
    llm_timeout: PositiveFloat = Field(30.0, alias="WRITEBACK_LLM_TIMEOUT")
    redact_patterns: Json[list[str]] = Field(
        [], alias="WRITEBACK_REDACT_PATTERNS", validate_default=False
    )
    draft_max_chars: PositiveInt = Field(8000, alias="WRITEBACK_DRAFT_MAX_CHARS")
    draft_link_hosts: CommaList = Field((), alias="WRITEBACK_DRAFT_LINK_HOSTS")
    allow_private_psa_hosts: bool = Field(False, alias="WRITEBACK_PSA_ALLOW_PRIVATE_HOSTS")
    psa_allowed_networks: str = Field("", alias="WRITEBACK_PSA_ALLOWED_NETWORKS")
    psa_timeout: PositiveFloat = Field(30.0, alias="WRITEBACK_PSA_TIMEOUT")
    psa_rate: PositiveFloat | None = Field(None, alias="WRITEBACK_PSA_RATE")
    psa_burst: PositiveInt | None = Field(None, alias="WRITEBACK_PSA_BURST")
    cw_process_notifications: bool = Field(False, alias="WRITEBACK_CW_PROCESS_NOTIFICATIONS")
    max_body_bytes: PositiveInt = Field(1_000_000, alias="WRITEBACK_MAX_BODY_BYTES")
    visibility_timeout: PositiveInt = Field(
        DEFAULT_VISIBILITY_TIMEOUT, alias="WRITEBACK_VISIBILITY_TIMEOUT"
    )
    queue_name: str = Field("writeback", alias="WRITEBACK_QUEUE")
    log_format: Literal["text", "json"] = Field("text", alias="WRITEBACK_LOG_FORMAT")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", alias="WRITEBACK_LOG_LEVEL"
    )
    metrics_port: int | None = Field(None, ge=1, le=65535, alias="WRITEBACK_METRICS_PORT")
    worker_pool: Literal["threads", "prefork", "solo"] = Field(
        "threads", alias="WRITEBACK_WORKER_POOL"
    )
    worker_concurrency: PositiveInt = Field(16, alias="WRITEBACK_WORKER_CONCURRENCY")
    sweep_interval: PositiveFloat = Field(1.0, alias="WRITEBACK_SWEEP_INTERVAL")
    cors_origins: CommaList = Field((), alias="WRITEBACK_CORS_ORIGINS")
    sse_lifetime: PositiveFloat = Field(120.0, alias="WRITEBACK_SSE_LIFETIME")
    sse_poll_interval: PositiveFloat = Field(2.0, alias="WRITEBACK_SSE_POLL_INTERVAL")
    events_url_minutes: PositiveFloat = Field(10.0, alias="WRITEBACK_EVENTS_URL_MINUTES")
    # The retry policy
    max_attempts: PositiveInt = Field(_DEFAULT.max_attempts, alias="WRITEBACK_RETRY_MAX_ATTEMPTS")
    backoff_base: PositiveFloat = Field(_DEFAULT.backoff_base, alias="WRITEBACK_RETRY_BACKOFF")
    backoff_max: PositiveFloat = Field(_DEFAULT.backoff_max, alias="WRITEBACK_RETRY_BACKOFF_MAX")
    verify_attempts: PositiveInt = Field(
        _DEFAULT.verify_attempts, alias="WRITEBACK_VERIFY_ATTEMPTS"
    )
    verify_backoff_base: PositiveFloat = Field(
        _DEFAULT.verify_backoff_base, alias="WRITEBACK_VERIFY_BACKOFF"
    )
    verify_backoff_max: PositiveFloat = Field(
        _DEFAULT.verify_backoff_max, alias="WRITEBACK_VERIFY_BACKOFF_MAX"
    )
    step_lease: PositiveFloat = Field(_DEFAULT.step_lease, alias="WRITEBACK_STEP_LEASE")
    post_settle: PositiveFloat | None = Field(None, alias="WRITEBACK_POST_SETTLE")
    tenant_slots: PositiveInt = Field(_DEFAULT.tenant_slots, alias="WRITEBACK_TENANT_SLOTS")
    pickup_timeout: PositiveFloat = Field(_DEFAULT.pickup_timeout, alias="WRITEBACK_PICKUP_TIMEOUT")
    max_redeliveries: PositiveInt = Field(
        _DEFAULT.max_redeliveries, alias="WRITEBACK_MAX_REDELIVERIES"
    )

    @field_validator("redact_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        return patterns


class ProcessEnvironment(BaseSettings, Environment):
    """The same variables, read from this process's environment."""

    # Values are decoded by the fields' own types (comma lists, JSON), not pre-parsed as JSON.
    model_config = SettingsConfigDict(
        case_sensitive=True,
        extra="ignore",
        frozen=True,
        env_ignore_empty=True,
        enable_decoding=False,
    )


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    broker_url: str
    # What every process must share besides the broker: the PSA request budget and the job
    # feed. The broker itself when it is Redis; None: each process keeps its own.
    redis_url: str | None
    secret_keys: tuple[str, ...]
    secret_key_file: Path
    anthropic_api_key: str | None
    anthropic_base_url: str | None
    anthropic_model: str
    llm_timeout: float
    redact_patterns: tuple[str, ...]
    draft_max_chars: int
    draft_link_hosts: frozenset[str]
    allow_private_psa_hosts: bool
    # Which non-public PSA hosts may be connected to (metadata never): the allowlist plus, with
    # the flag above, loopback and the private ranges.
    psa_host_policy: HostPolicy
    psa_timeout: float
    psa_rate: float | None
    cw_process_notifications: bool
    psa_burst: int | None
    max_body_bytes: int
    visibility_timeout: int
    queue_name: str
    log_format: str
    metrics_port: int | None
    log_level: str
    worker_pool: str
    worker_concurrency: int
    sweep_interval: float
    retry: RetryPolicy
    # Browser origins allowed to call the API (CORS); none by default.
    cors_origins: tuple[str, ...]
    # An event stream ends after this long (the client reconnects with Last-Event-ID), and
    # reads the database at least this often in case a wake-up was missed.
    sse_lifetime: float
    sse_poll_interval: float
    # How long the credential in a job's events_url lets a browser (re)open its event stream.
    events_url_minutes: float

    @property
    def uses_filesystem_broker(self) -> bool:
        return self.broker_url.startswith("filesystem://")


def is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://"))


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """From this process's environment, or from `env` alone."""
    try:
        if env is None:
            raw: Environment = ProcessEnvironment()
        else:
            raw = Environment.model_validate({k: v for k, v in env.items() if v != ""})
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
    except SettingsError as exc:  # a source could not read a variable
        raise ConfigError(str(exc)) from None
    settings = _settings(raw)
    try:
        settings.retry.check(sweep_interval=raw.sweep_interval)
    except ConfigurationRefused as exc:
        raise ConfigError(str(exc)) from None
    return settings


def _explain(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
    )


def _settings(raw: Environment) -> Settings:
    data_dir = raw.data_dir.resolve()
    try:
        host_policy = HostPolicy.parse(
            raw.psa_allowed_networks, allow_private=raw.allow_private_psa_hosts
        )
    except ValueError as exc:
        raise ConfigError(f"WRITEBACK_PSA_ALLOWED_NETWORKS: {exc}") from None
    retry = RetryPolicy(
        max_attempts=raw.max_attempts,
        backoff_base=raw.backoff_base,
        backoff_max=raw.backoff_max,
        verify_attempts=raw.verify_attempts,
        verify_backoff_base=raw.verify_backoff_base,
        verify_backoff_max=raw.verify_backoff_max,
        step_lease=raw.step_lease,
        post_settle=raw.post_settle or 2 * raw.psa_timeout,
        tenant_slots=raw.tenant_slots,
        pickup_timeout=raw.pickup_timeout,
        max_redeliveries=raw.max_redeliveries,
    )
    return Settings(
        data_dir=data_dir,
        database_url=raw.database_url or f"sqlite:///{data_dir / 'writeback.db'}",
        broker_url=raw.broker_url,
        redis_url=raw.redis_url or (raw.broker_url if is_redis(raw.broker_url) else None),
        secret_keys=raw.secret_keys,
        secret_key_file=data_dir / "secret.key",
        anthropic_api_key=raw.anthropic_api_key,
        anthropic_base_url=raw.anthropic_base_url,
        anthropic_model=raw.anthropic_model,
        llm_timeout=raw.llm_timeout,
        redact_patterns=tuple(raw.redact_patterns),
        draft_max_chars=raw.draft_max_chars,
        draft_link_hosts=frozenset(host.lower() for host in raw.draft_link_hosts),
        allow_private_psa_hosts=raw.allow_private_psa_hosts,
        psa_host_policy=host_policy,
        psa_timeout=raw.psa_timeout,
        psa_rate=raw.psa_rate,
        cw_process_notifications=raw.cw_process_notifications,
        psa_burst=raw.psa_burst,
        max_body_bytes=raw.max_body_bytes,
        visibility_timeout=raw.visibility_timeout,
        queue_name=raw.queue_name,
        log_format=raw.log_format,
        metrics_port=raw.metrics_port,
        log_level=raw.log_level,
        worker_pool=raw.worker_pool,
        worker_concurrency=raw.worker_concurrency,
        sweep_interval=raw.sweep_interval,
        retry=retry,
        cors_origins=raw.cors_origins,
        sse_lifetime=raw.sse_lifetime,
        sse_poll_interval=raw.sse_poll_interval,
        events_url_minutes=raw.events_url_minutes,
    )
