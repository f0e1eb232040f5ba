"""The migrations make exactly the schema the code maps (PostgreSQL and the embedded SQLite), and
migration 0007 gives the account's fallback statuses their new names without losing a value,
without breaking the previous release, and reversibly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tests.support import drop_database, empty_database
from writeback.adapters.db import migrate
from writeback.adapters.db.tables import metadata

pytestmark = pytest.mark.integration


@pytest.fixture
def postgresql_url() -> Iterator[str]:
    url = empty_database("wb_migrations")
    yield url
    drop_database(url)


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'writeback.db'}"
    return str(request.getfixturevalue("postgresql_url"))


def _differences(url: str) -> list[object]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def _settings(url: str, *columns: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = f"SELECT account_id, {', '.join(columns)} FROM account_settings ORDER BY 1"
            return [tuple(row) for row in conn.execute(sa.text(query))]
    finally:
        engine.dispose()


def _run(url: str, *statements: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    engine.dispose()


NEW = ("resolved_status_id", "escalated_status_id")
OLD = ("cw_resolved_status_id", "cw_escalated_status_id")
ACCOUNTS = (
    "INSERT INTO accounts (id, name, created_at) VALUES "
    "(1, 'a', '2026-01-01 00:00:00+00'), (2, 'b', '2026-01-01 00:00:00+00'), "
    "(3, 'c', '2026-01-01 00:00:00+00'), (4, 'd', '2026-01-01 00:00:00+00')"
)


def test_the_migrations_make_the_schema_the_code_maps(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    assert _differences(empty_url) == []


def test_0007_carries_the_status_settings_to_their_new_names_and_back(empty_url: str) -> None:
    migrate.upgrade(empty_url, "0006")
    _run(
        empty_url,
        ACCOUNTS,
        "INSERT INTO account_settings (account_id, cw_resolved_status_id, "
        "cw_escalated_status_id) VALUES (1, 42, 43), (2, NULL, 7)",
    )

    migrate.upgrade(empty_url, "0007")
    assert _settings(empty_url, *NEW) == [(1, 42, 43), (2, None, 7)]

    _run(empty_url, "UPDATE account_settings SET resolved_status_id = 5 WHERE account_id = 2")
    migrate.downgrade(empty_url, "0006")
    assert _settings(empty_url, *OLD) == [(1, 42, 43), (2, 5, 7)]


def test_after_0007_the_previous_release_and_this_one_see_the_same_settings(
    postgresql_url: str,
) -> None:
    """During a roll-out (or after a roll-back) the previous release writes the old names and
    this one the new: on PostgreSQL each sees what the other wrote."""
    migrate.upgrade(postgresql_url, "0007")
    _run(
        postgresql_url,
        ACCOUNTS,
        "INSERT INTO account_settings (account_id, cw_resolved_status_id) VALUES (1, 42)",
        "INSERT INTO account_settings (account_id, escalated_status_id) VALUES (2, 43)",
        "INSERT INTO account_settings (account_id, resolved_status_id, escalated_status_id) "
        "VALUES (3, 1, 2), (4, 1, 2)",
        "UPDATE account_settings SET cw_resolved_status_id = 8 WHERE account_id = 3",
        "UPDATE account_settings SET resolved_status_id = NULL, escalated_status_id = 9 "
        "WHERE account_id = 4",
    )
    expected = [(1, 42, None), (2, None, 43), (3, 8, 2), (4, None, 9)]
    assert _settings(postgresql_url, *NEW) == _settings(postgresql_url, *OLD) == expected
