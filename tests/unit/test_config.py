from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from writeback.config import ConfigError, Settings, load_settings
from writeback.domain.retry import RetryPolicy
from writeback.domain.site_url import HostPolicy


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


def test_given_variables_alone_are_read_when_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WRITEBACK_QUEUE", "from-the-process")
    assert load_settings({}).queue_name == "writeback"
    assert load_settings().queue_name == "from-the-process"


def test_the_budget_and_feed_redis_is_the_broker_unless_named(tmp_path: Path) -> None:
    def redis_url(**env: str) -> str | None:
        return load_settings({"WRITEBACK_DATA_DIR": str(tmp_path), **env}).redis_url

    assert redis_url(CELERY_BROKER_URL="redis://r:6379/0") == "redis://r:6379/0"
    assert redis_url(CELERY_BROKER_URL="amqp://g@q//") is None  # each process its own
    assert redis_url() is None  # the embedded defaults: one process of each
    named = {"CELERY_BROKER_URL": "amqp://g@q//", "WRITEBACK_REDIS_URL": "rediss://r:6380/1"}
    assert redis_url(**named) == "rediss://r:6380/1"


def test_derived_values(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "WRITEBACK_DATA_DIR": str(tmp_path),
            "WRITEBACK_PSA_TIMEOUT": "12",
            "WRITEBACK_STEP_LEASE": "45",
            "WRITEBACK_PSA_ALLOWED_NETWORKS": "10.20.0.0/16",
            "WRITEBACK_PSA_ALLOW_PRIVATE_HOSTS": "1",
            "WRITEBACK_DRAFT_LINK_HOSTS": "Docs.Example.com, kb.example.com",
        }
    )
    assert settings.secret_key_file == tmp_path / "secret.key"
    # A fenced write holds the lease for the PSA's timeout; the settle time is 15 s more.
    assert settings.retry == RetryPolicy(step_lease=45, post_settle=27, write_timeout=12)
    assert load_settings({"WRITEBACK_POST_SETTLE": "5"}).retry.post_settle == 5
    assert settings.psa_host_policy == HostPolicy.parse("10.20.0.0/16", allow_private=True)
    assert settings.draft_link_hosts == {"docs.example.com", "kb.example.com"}


def test_a_default_derived_from_a_malformed_variable_names_only_that_variable() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"WRITEBACK_PSA_TIMEOUT": "soon"})
    assert str(refused.value).startswith("WRITEBACK_PSA_TIMEOUT: ")
    assert "post_settle" not in str(refused.value) and ";" not in str(refused.value)


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings({"WRITEBACK_DATA_DIR": str(tmp_path)})
    with pytest.raises(ValidationError, match="frozen"):
        settings.queue_name = "other"  # type: ignore[misc]


# The README's configuration table is generated from the Settings class; this test keeps it so.
README = Path(__file__).resolve().parents[2] / "README.md"
TABLE_START = "<!-- generated from writeback.config.Settings: python -m tests.unit.test_config -->"
TABLE_END = "<!-- end of the generated table -->"


def settings_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        assert field.alias and field.description, f"{name} needs an alias and a description"
        rows.append(f"| `{field.alias}` | {_shown_default(field)} | {field.description} |")
    return "\n".join(rows)


def _shown_default(field: FieldInfo) -> str:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "shown_default" in extra:
        return str(extra["shown_default"])
    value = field.get_default()
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if value in ("", (), frozenset()):
        return "none"
    if isinstance(value, Path):
        return f"`./{value}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def _readme_parts() -> tuple[str, str, str]:
    before, rest = README.read_text().split(TABLE_START + "\n", 1)
    table, after = rest.split("\n" + TABLE_END, 1)
    return before, table, after


def test_the_readme_configuration_table_is_generated_from_the_settings_class() -> None:
    assert _readme_parts()[1] == settings_table(), (
        "README's configuration table differs from writeback.config.Settings: "
        "run `.venv/bin/python -m tests.unit.test_config` to regenerate it"
    )


if __name__ == "__main__":
    before, _, after = _readme_parts()
    README.write_text(f"{before}{TABLE_START}\n{settings_table()}\n{TABLE_END}{after}")
