from __future__ import annotations

from pathlib import Path

import pytest

from writeback.config import ConfigError, load_settings


def test_no_environment_means_embedded_defaults(tmp_path: Path) -> None:
    settings = load_settings({"WRITEBACK_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'writeback.db'}"
    assert settings.uses_filesystem_broker
    assert settings.secret_keys == ()
    assert not settings.allow_private_psa_hosts


def test_environment_overrides(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "WRITEBACK_DATA_DIR": str(tmp_path),
            "DATABASE_URL": "postgresql+psycopg2://u@h/db",
            "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
            "WRITEBACK_SECRET_KEYS": "k1, k2",
            "WRITEBACK_PSA_ALLOW_PRIVATE_HOSTS": "1",
            "WRITEBACK_VERIFY_ATTEMPTS": "6",
        }
    )
    assert settings.secret_keys == ("k1", "k2")
    assert settings.allow_private_psa_hosts and not settings.uses_filesystem_broker
    assert settings.retry.verify_attempts == 6


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WRITEBACK_SWEEP_INTERVAL": "40"}, "WRITEBACK_SWEEP_INTERVAL"),
        ({"WRITEBACK_STEP_LEASE": "2"}, "WRITEBACK_STEP_LEASE"),
    ],
)
def test_timings_under_which_a_live_step_could_be_taken_over_are_refused(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WRITEBACK_PSA_TIMEOUT", "soon"),
        ("WRITEBACK_WORKER_CONCURRENCY", "1.5"),  # a float where an integer belongs
        ("WRITEBACK_PSA_ALLOW_PRIVATE_HOSTS", "ture"),  # a typo in a flag
        ("WRITEBACK_LOG_LEVEL", "LOUD"),
        ("WRITEBACK_LOG_FORMAT", "xml"),
        ("WRITEBACK_REDACT_PATTERNS", '["(unclosed"]'),
        ("WRITEBACK_REDACT_PATTERNS", "not json"),
        ("WRITEBACK_METRICS_PORT", "70000"),
        ("WRITEBACK_TENANT_SLOTS", "0"),
        ("WRITEBACK_REDIS_URL", "amqp://guest@127.0.0.1//"),
    ],
)
def test_a_malformed_variable_stops_start_up_naming_it(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})


def test_the_process_environment_is_read_with_empty_values_unset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WRITEBACK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("WRITEBACK_TENANT_SLOTS", "9")
    monkeypatch.setenv("WRITEBACK_PSA_RATE", "")
    monkeypatch.setenv("WRITEBACK_SECRET_KEYS", "k1,k2")
    monkeypatch.setenv("WRITEBACK_REDACT_PATTERNS", '["ticket-\\\\d+"]')
    settings = load_settings()
    assert settings.retry.tenant_slots == 9 and settings.psa_rate is None
    assert settings.secret_keys == ("k1", "k2")
    assert settings.redact_patterns == ("ticket-\\d+",)


def test_the_budget_and_feed_redis_is_the_broker_unless_named(tmp_path: Path) -> None:
    def redis_url(**env: str) -> str | None:
        return load_settings({"WRITEBACK_DATA_DIR": str(tmp_path), **env}).redis_url

    assert redis_url(CELERY_BROKER_URL="redis://r:6379/0") == "redis://r:6379/0"
    assert redis_url(CELERY_BROKER_URL="amqp://g@q//") is None  # each process its own
    assert redis_url() is None  # the embedded defaults: one process of each
    named = {"CELERY_BROKER_URL": "amqp://g@q//", "WRITEBACK_REDIS_URL": "rediss://r:6380/1"}
    assert redis_url(**named) == "rediss://r:6380/1"
