"""Settings read from the environment, once, by the composition root.

With no variables set everything runs on embedded defaults in a local data folder: a SQLite
database, a filesystem Celery broker and a generated Fernet key file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from writeback.domain.retry import RetryPolicy

# Redis redelivers any message not acked within this many seconds; every delay we hand to the
# broker must stay well under it (see reference/celery.md).
DEFAULT_VISIBILITY_TIMEOUT = 3600


class ConfigError(ValueError):
    """A setting is missing or malformed."""


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return int(_float(env, name, default))


def _patterns(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Extra redaction patterns: a JSON array of regular expressions."""
    raw = env.get(name)
    if not raw:
        return ()
    try:
        patterns = json.loads(raw)
        if not isinstance(patterns, list):
            raise ValueError
        for pattern in patterns:
            re.compile(pattern)
    except (ValueError, TypeError, re.error):
        raise ConfigError(f"{name} must be a JSON array of regular expressions") from None
    return tuple(patterns)


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    broker_url: str
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
    cors_origins: tuple[str, ...] = ()
    # An event stream ends after this long (the client reconnects with Last-Event-ID), and
    # reads the database at least this often in case a wake-up was missed.
    sse_lifetime: float = 120.0
    sse_poll_interval: float = 2.0

    @property
    def uses_filesystem_broker(self) -> bool:
        return self.broker_url.startswith("filesystem://")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    data_dir = Path(env.get("WRITEBACK_DATA_DIR") or ".writeback").resolve()
    keys = tuple(k.strip() for k in env.get("WRITEBACK_SECRET_KEYS", "").split(",") if k.strip())
    retry = RetryPolicy(
        max_attempts=_int(env, "WRITEBACK_RETRY_MAX_ATTEMPTS", RetryPolicy.max_attempts),
        backoff_base=_float(env, "WRITEBACK_RETRY_BACKOFF", RetryPolicy.backoff_base),
        backoff_max=_float(env, "WRITEBACK_RETRY_BACKOFF_MAX", RetryPolicy.backoff_max),
        max_countdown=_float(env, "WRITEBACK_MAX_COUNTDOWN", RetryPolicy.max_countdown),
        verify_attempts=_int(env, "WRITEBACK_VERIFY_ATTEMPTS", RetryPolicy.verify_attempts),
        verify_backoff_base=_float(
            env, "WRITEBACK_VERIFY_BACKOFF", RetryPolicy.verify_backoff_base
        ),
        verify_backoff_max=_float(
            env, "WRITEBACK_VERIFY_BACKOFF_MAX", RetryPolicy.verify_backoff_max
        ),
        step_lease=_float(env, "WRITEBACK_STEP_LEASE", RetryPolicy.step_lease),
        post_settle=_float(
            env, "WRITEBACK_POST_SETTLE", 2 * _float(env, "WRITEBACK_PSA_TIMEOUT", 30.0)
        ),
        enqueue_grace=_float(env, "WRITEBACK_ENQUEUE_GRACE", RetryPolicy.enqueue_grace),
        max_redeliveries=_int(env, "WRITEBACK_MAX_REDELIVERIES", RetryPolicy.max_redeliveries),
    )
    settings = Settings(
        data_dir=data_dir,
        database_url=env.get("DATABASE_URL") or f"sqlite:///{data_dir / 'writeback.db'}",
        broker_url=env.get("CELERY_BROKER_URL") or "filesystem://",
        secret_keys=keys,
        secret_key_file=data_dir / "secret.key",
        anthropic_api_key=env.get("ANTHROPIC_API_KEY") or None,
        anthropic_base_url=env.get("ANTHROPIC_BASE_URL") or None,
        anthropic_model=env.get("WRITEBACK_ANTHROPIC_MODEL") or "claude-sonnet-4-6",
        llm_timeout=_float(env, "WRITEBACK_LLM_TIMEOUT", 30.0),
        redact_patterns=_patterns(env, "WRITEBACK_REDACT_PATTERNS"),
        draft_max_chars=_int(env, "WRITEBACK_DRAFT_MAX_CHARS", 8000),
        draft_link_hosts=frozenset(
            h.strip().lower()
            for h in env.get("WRITEBACK_DRAFT_LINK_HOSTS", "").split(",")
            if h.strip()
        ),
        allow_private_psa_hosts=_flag(env, "WRITEBACK_PSA_ALLOW_PRIVATE_HOSTS"),
        psa_timeout=_float(env, "WRITEBACK_PSA_TIMEOUT", 30.0),
        psa_rate=_float(env, "WRITEBACK_PSA_RATE", 0.0) or None,
        cw_process_notifications=_flag(env, "WRITEBACK_CW_PROCESS_NOTIFICATIONS"),
        psa_burst=_int(env, "WRITEBACK_PSA_BURST", 0) or None,
        max_body_bytes=_int(env, "WRITEBACK_MAX_BODY_BYTES", 1_000_000),
        visibility_timeout=_int(env, "WRITEBACK_VISIBILITY_TIMEOUT", DEFAULT_VISIBILITY_TIMEOUT),
        queue_name=env.get("WRITEBACK_QUEUE") or "writeback",
        log_format=(env.get("WRITEBACK_LOG_FORMAT") or "text").lower(),
        log_level=(env.get("WRITEBACK_LOG_LEVEL") or "INFO").upper(),
        metrics_port=_int(env, "WRITEBACK_METRICS_PORT", 0) or None,
        worker_pool=env.get("WRITEBACK_WORKER_POOL") or "threads",
        worker_concurrency=_int(env, "WRITEBACK_WORKER_CONCURRENCY", 16),
        sweep_interval=_float(env, "WRITEBACK_SWEEP_INTERVAL", 30.0),
        retry=retry,
        cors_origins=tuple(
            o.strip() for o in env.get("WRITEBACK_CORS_ORIGINS", "").split(",") if o.strip()
        ),
        sse_lifetime=_float(env, "WRITEBACK_SSE_LIFETIME", 120.0),
        sse_poll_interval=_float(env, "WRITEBACK_SSE_POLL_INTERVAL", 2.0),
    )
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
    retry = settings.retry
    # Half the visibility timeout leaves room for the step's own run time after the countdown.
    if retry.max_countdown + retry.step_lease >= settings.visibility_timeout:
        raise ConfigError(
            "WRITEBACK_MAX_COUNTDOWN plus WRITEBACK_STEP_LEASE must stay under the broker "
            f"visibility timeout ({settings.visibility_timeout} s)"
        )
    if settings.log_format not in ("text", "json"):
        raise ConfigError("WRITEBACK_LOG_FORMAT must be text or json")
    if retry.max_attempts < 1 or retry.verify_attempts < 1:
        raise ConfigError("retry attempt counts must be at least 1")
