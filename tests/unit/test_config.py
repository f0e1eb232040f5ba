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
        ({"WRITEBACK_POST_SETTLE": "5", "WRITEBACK_PSA_TIMEOUT": "30"}, "WRITEBACK_POST_SETTLE"),
    ],
)
def test_timings_under_which_a_live_step_could_be_taken_over_are_refused(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(env)


def test_malformed_numbers_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="WRITEBACK_PSA_TIMEOUT"):
        load_settings({"WRITEBACK_PSA_TIMEOUT": "soon"})
