"""Settings read from the environment, once, by the composition root.

Each variable is declared once, as a field of `Settings` (pydantic-settings): its name in the
environment (the alias), its type, its default and what it means, from which the README's
configuration table is generated. A flag that is not a boolean, a float where an integer belongs
or an unknown log level stops start-up with a message naming the variable. With no variables set
everything runs on embedded defaults in a local data folder: a SQLite database, a filesystem
Celery broker and a generated Fernet key file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    Json,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from writeback.domain.errors import ConfigurationRefused
from writeback.domain.retry import RetryPolicy
from writeback.domain.site_url import HostPolicy


class ConfigError(ValueError):
    """A setting is missing or malformed."""


def is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://"))


def _redis_or_none(broker_url: str) -> str | None:
    return broker_url if is_redis(broker_url) else None


def _comma_list(raw: object) -> object:
    if isinstance(raw, str):
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    return raw


def _lowercase(hosts: frozenset[str]) -> frozenset[str]:
    return frozenset(host.lower() for host in hosts)


CommaList = Annotated[tuple[str, ...], BeforeValidator(_comma_list)]
HostNames = Annotated[frozenset[str], BeforeValidator(_comma_list), AfterValidator(_lowercase)]
_RETRY = RetryPolicy()


def shown(default: str) -> dict[str, Any]:
    """The README's words for a default that is derived, or decided elsewhere."""
    return {"shown_default": default}


class Settings(BaseSettings):
    """Every variable, by its name in the environment; empty means unset.

    A default computed from other variables (the SQLite URL in the data folder, Redis when the
    broker is Redis) is the field's own default factory; values built from several variables
    (the retry policy, the PSA host policy) are properties."""

    # Values are decoded by the fields' own types (comma lists, JSON), not pre-parsed as JSON.
    model_config = SettingsConfigDict(
        case_sensitive=True,
        extra="ignore",
        frozen=True,
        env_ignore_empty=True,
        enable_decoding=False,
    )

    data_dir: Annotated[Path, AfterValidator(Path.resolve)] = Field(
        Path(".writeback"),
        alias="WRITEBACK_DATA_DIR",
        validate_default=True,
        description="where the embedded defaults live",
    )
    database_url: str = Field(
        default_factory=lambda given: f"sqlite:///{given['data_dir'] / 'writeback.db'}",
        alias="DATABASE_URL",
        description="SQLAlchemy URL, e.g. `postgresql+psycopg2://user@host/db`",
        json_schema_extra=shown("`sqlite:///./.writeback/writeback.db`"),
    )
    broker_url: str = Field(
        "filesystem://",
        alias="CELERY_BROKER_URL",
        description=(
            "e.g. `redis://127.0.0.1:6379/0` or `amqp://user:pass@host:5672/vhost`; "
            "`filesystem://` keeps the queue in `./.writeback/broker`"
        ),
    )
    redis_url: str | None = Field(
        default_factory=lambda given: _redis_or_none(given["broker_url"]),
        alias="WRITEBACK_REDIS_URL",
        pattern=r"^rediss?://",
        description=(
            "Redis for what every process shares besides the broker: the PSA request budget "
            "and the job feed (ETags, SSE wake-ups). Set it with RabbitMQ: without it each "
            "process keeps its own budget"
        ),
        json_schema_extra=shown("the broker, when it is Redis"),
    )
    secret_keys: CommaList = Field(
        (),
        alias="WRITEBACK_SECRET_KEYS",
        description="comma-separated Fernet keys; the first encrypts, all decrypt (rotation)",
        json_schema_extra=shown("a key file `./.writeback/secret.key`"),
    )
    psa_allowed_networks: str = Field(
        "",
        alias="WRITEBACK_PSA_ALLOWED_NETWORKS",
        description=(
            "on-premise PSAs the SSRF guard admits: comma-separated networks and host names, "
            "e.g. `10.20.0.0/16,psa.corp.example` (also allows http); never cloud metadata"
        ),
    )
    allow_private_psa_hosts: bool = Field(
        False,
        alias="WRITEBACK_PSA_ALLOW_PRIVATE_HOSTS",
        description=(
            "shorthand for loopback and the private ranges (`127/8`, `10/8`, `172.16/12`, "
            "`192.168/16`, `100.64/10`, `::1`, `fc00::/7`) plus http; never cloud metadata"
        ),
    )
    psa_timeout: PositiveFloat = Field(
        30.0, alias="WRITEBACK_PSA_TIMEOUT", description="seconds per PSA HTTP call"
    )
    psa_rate: PositiveFloat | None = Field(
        None,
        alias="WRITEBACK_PSA_RATE",
        description="requests per second per PSA tenant",
        json_schema_extra=shown("per vendor"),
    )
    psa_burst: PositiveInt | None = Field(
        None,
        alias="WRITEBACK_PSA_BURST",
        description="burst of requests per PSA tenant",
        json_schema_extra=shown("per vendor"),
    )
    cw_process_notifications: bool = Field(
        False,
        alias="WRITEBACK_CW_PROCESS_NOTIFICATIONS",
        description="let ConnectWise send its notifications for our notes",
    )
    # The retry policy's variables, from which `retry` builds it.
    verify_attempts: PositiveInt = Field(
        _RETRY.verify_attempts,
        alias="WRITEBACK_VERIFY_ATTEMPTS",
        description="status change + re-read attempts before `status_verification_failed`",
    )
    verify_backoff_base: PositiveFloat = Field(
        _RETRY.verify_backoff_base,
        alias="WRITEBACK_VERIFY_BACKOFF",
        description="exponential wait between verification attempts (seconds)",
    )
    verify_backoff_max: PositiveFloat = Field(
        _RETRY.verify_backoff_max,
        alias="WRITEBACK_VERIFY_BACKOFF_MAX",
        description="the longest of those waits (seconds)",
    )
    max_attempts: PositiveInt = Field(
        _RETRY.max_attempts,
        alias="WRITEBACK_RETRY_MAX_ATTEMPTS",
        description=(
            "attempts of a step on transient failures (5xx, 429, timeouts, resets, model outages)"
        ),
    )
    backoff_base: PositiveFloat = Field(
        _RETRY.backoff_base,
        alias="WRITEBACK_RETRY_BACKOFF",
        description=(
            "jittered exponential backoff of those retries (seconds); a `Retry-After` is "
            "honoured exactly"
        ),
    )
    backoff_max: PositiveFloat = Field(
        _RETRY.backoff_max,
        alias="WRITEBACK_RETRY_BACKOFF_MAX",
        description="the longest of those waits (seconds)",
    )
    # How long a PSA may still be storing a write it received: a look for the note sooner
    # could miss one about to land. Generous: real PSAs take a second or two.
    post_settle: PositiveFloat = Field(
        default_factory=lambda given: given["psa_timeout"] + 15,
        alias="WRITEBACK_POST_SETTLE",
        description=(
            "how long a PSA may still be storing a note it received: after an ambiguous post, "
            "or a takeover of a step whose post may be in flight, the note is looked for no "
            "sooner (seconds)"
        ),
        json_schema_extra=shown("PSA timeout + 15"),
    )
    step_lease: PositiveFloat = Field(
        _RETRY.step_lease,
        alias="WRITEBACK_STEP_LEASE",
        description=(
            "a running step renews its lease every third of this; a lease that runs out means "
            "its worker died, and the step is sent again (≥ 3 s, and longer than the sweep "
            "interval: checked at start)"
        ),
    )
    tenant_slots: PositiveInt = Field(
        _RETRY.tenant_slots,
        alias="WRITEBACK_TENANT_SLOTS",
        description=(
            "jobs of one tenant in the broker or running at once; the rest wait in the database"
        ),
    )
    pickup_timeout: PositiveFloat = Field(
        _RETRY.pickup_timeout,
        alias="WRITEBACK_PICKUP_TIMEOUT",
        description=(
            "a message not picked up this long is sent again (never counted as a loss; seconds)"
        ),
    )
    max_redeliveries: PositiveInt = Field(
        _RETRY.max_redeliveries,
        alias="WRITEBACK_MAX_REDELIVERIES",
        description="after this many proven losses a job fails with `delivery_lost`",
    )
    # Redis gives back a message not acknowledged within this many seconds. Step messages are
    # acknowledged when their step ends, so a killed worker's messages come back this soon; a
    # step running longer gets a second copy, which its claim skips.
    visibility_timeout: PositiveInt = Field(
        30,
        alias="WRITEBACK_VISIBILITY_TIMEOUT",
        description=(
            "Redis visibility timeout: a killed worker's messages come back after it (a step "
            "running longer gets a second copy, which its claim skips)"
        ),
    )
    sweep_interval: PositiveFloat = Field(
        1.0,
        alias="WRITEBACK_SWEEP_INTERVAL",
        description="seconds between beat ticks (admission, held waits, recovery)",
    )
    queue_name: str = Field("writeback", alias="WRITEBACK_QUEUE", description="Celery queue name")
    worker_pool: Literal["threads", "prefork", "solo"] = Field(
        "threads",
        alias="WRITEBACK_WORKER_POOL",
        description="the steps wait on HTTP: threads keep many in flight",
    )
    worker_concurrency: PositiveInt = Field(
        16, alias="WRITEBACK_WORKER_CONCURRENCY", description="steps a worker runs at once"
    )
    max_body_bytes: PositiveInt = Field(
        1_000_000, alias="WRITEBACK_MAX_BODY_BYTES", description="larger request bodies get 413"
    )
    cors_origins: CommaList = Field(
        (),
        alias="WRITEBACK_CORS_ORIGINS",
        description="browser origins allowed to call the API (comma-separated)",
    )
    sse_lifetime: PositiveFloat = Field(
        120.0,
        alias="WRITEBACK_SSE_LIFETIME",
        description="seconds an event stream stays open before the client reconnects",
    )
    sse_poll_interval: PositiveFloat = Field(
        2.0,
        alias="WRITEBACK_SSE_POLL_INTERVAL",
        description=(
            "an event stream reads the database at least this often (seconds), in case a "
            "wake-up was missed"
        ),
    )
    events_url_minutes: PositiveFloat = Field(
        10.0,
        alias="WRITEBACK_EVENTS_URL_MINUTES",
        description=(
            "how long the credential in a job's `events_url` lets a browser (re)open its event "
            "stream; then the stream answers 401 `events_url_expired`"
        ),
    )
    anthropic_api_key: str | None = Field(
        None,
        alias="ANTHROPIC_API_KEY",
        description="drafts come from the Messages API when it is set; offline drafts otherwise",
    )
    anthropic_base_url: str | None = Field(
        None, alias="ANTHROPIC_BASE_URL", description="another address for the Messages API"
    )
    anthropic_model: str = Field(
        "claude-sonnet-4-6", alias="WRITEBACK_ANTHROPIC_MODEL", description="model id"
    )
    llm_timeout: PositiveFloat = Field(
        30.0, alias="WRITEBACK_LLM_TIMEOUT", description="seconds per model call"
    )
    redact_patterns: Json[tuple[str, ...]] = Field(
        (),
        alias="WRITEBACK_REDACT_PATTERNS",
        validate_default=False,
        description="extra redaction regexes, a JSON array",
    )
    draft_max_chars: PositiveInt = Field(
        8000, alias="WRITEBACK_DRAFT_MAX_CHARS", description="longest draft that may be posted"
    )
    draft_link_hosts: HostNames = Field(
        frozenset(),
        alias="WRITEBACK_DRAFT_LINK_HOSTS",
        description="hosts a draft may link to (comma-separated)",
    )
    log_format: Literal["text", "json"] = Field(
        "text", alias="WRITEBACK_LOG_FORMAT", description="`json` in production"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", alias="WRITEBACK_LOG_LEVEL", description="the lowest level logged"
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        alias="WRITEBACK_METRICS_PORT",
        description="the worker's metrics port",
    )

    @field_validator("redact_patterns")
    @classmethod
    def _compiles(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        return patterns

    @field_validator("psa_allowed_networks")
    @classmethod
    def _parses(cls, allowlist: str) -> str:
        HostPolicy.parse(allowlist)  # its ValueError names the entry
        return allowlist

    @model_validator(mode="after")
    def _keeps_live_steps_safe(self) -> Settings:
        try:
            self.retry.check(sweep_interval=self.sweep_interval)
        except ConfigurationRefused as exc:
            raise PydanticCustomError("configuration_refused", str(exc)) from None
        return self

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            backoff_base=self.backoff_base,
            backoff_max=self.backoff_max,
            verify_attempts=self.verify_attempts,
            verify_backoff_base=self.verify_backoff_base,
            verify_backoff_max=self.verify_backoff_max,
            post_settle=self.post_settle,
            step_lease=self.step_lease,
            tenant_slots=self.tenant_slots,
            pickup_timeout=self.pickup_timeout,
            max_redeliveries=self.max_redeliveries,
            write_timeout=self.psa_timeout,
        )

    @property
    def psa_host_policy(self) -> HostPolicy:
        """Which non-public PSA hosts may be connected to (metadata never): the allowlist plus,
        with WRITEBACK_PSA_ALLOW_PRIVATE_HOSTS, loopback and the private ranges."""
        return HostPolicy.parse(
            self.psa_allowed_networks, allow_private=self.allow_private_psa_hosts
        )

    @property
    def secret_key_file(self) -> Path:
        """Where the embedded defaults keep their key when WRITEBACK_SECRET_KEYS is unset."""
        return self.data_dir / "secret.key"

    @property
    def uses_filesystem_broker(self) -> bool:
        return self.broker_url.startswith("filesystem://")


class _GivenSettings(Settings):
    """Settings from a given mapping alone (tests), never this process's environment."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """From this process's environment, or from `env` alone."""
    try:
        if env is None:
            return Settings()
        return _GivenSettings.model_validate({k: v for k, v in env.items() if v != ""})
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
    except SettingsError as exc:  # a source could not read a variable
        raise ConfigError(str(exc)) from None


def _explain(exc: ValidationError) -> str:
    """One clause per fault, naming the variable. A default that could not be derived because a
    variable it depends on is malformed is left out: that variable is named already."""
    return "; ".join(
        _clause(error) for error in exc.errors() if error["type"] != "default_factory_not_called"
    )


def _clause(error: ErrorDetails) -> str:
    where = ".".join(str(part) for part in error["loc"])  # empty for a check across variables
    return f"{where}: {error['msg']}" if where else error["msg"]
