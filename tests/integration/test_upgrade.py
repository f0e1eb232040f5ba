"""An upgrade from the previous release's schema (0004) with jobs in every state: it never aborts
on data, and afterwards every job either finishes or is reported as a clear conflict."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.integration.conftest import flask_sender
from tests.support import (
    Api,
    Simulator,
    celery_worker,
    deployment_env,
    drop_database,
    empty_database,
)
from writeback import bootstrap
from writeback.adapters.crypto import FernetSealer
from writeback.adapters.db import migrate
from writeback.api import create_app
from writeback.config import load_settings
from writeback.domain.model import NoteType

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
CREDENTIALS = {
    "public_key": "pub-key",
    "private_key": "priv-key",
    "client_id": "11111111-2222-3333-4444-555555555555",
}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    url = empty_database("wb_upgrade")
    yield deployment_env(url, f"wb-upgrade-{uuid.uuid4().hex[:8]}", tmp_path / "data")
    drop_database(url)


def _insert(conn: sa.Connection, table: str, **values: Any) -> None:
    columns = ", ".join(values)
    conn.execute(sa.text(f"INSERT INTO {table} ({columns}) VALUES (:{', :'.join(values)})"), values)


def _job(
    conn: sa.Connection, session_id: int, kind: str, state: str, step: str, **extra: Any
) -> str:
    """A job row as the release of schema 0004 wrote it."""
    job_id = str(uuid.uuid4())
    created = extra.pop("created_at", NOW - timedelta(minutes=10))
    row = {
        "id": job_id,
        "account_id": 1,
        "session_id": session_id,
        "kind": kind,
        "state": state,
        "step": step,
        "attempts": 0,
        "markdown": "## Fix\nRestarted the spooler.",
        "redeliveries": 0,
        "created_at": created,
        "updated_at": created,
        **extra,
    }
    _insert(conn, "writeback_jobs", **row)
    return job_id


def test_an_upgrade_from_0004_never_aborts_and_never_strands_a_job(
    env: dict[str, str], simulator: Simulator, tmp_path: Path
) -> None:
    url = env["DATABASE_URL"]
    migrate.upgrade(url, "0004")
    sealed = FernetSealer([env["WRITEBACK_SECRET_KEYS"]]).seal(CREDENTIALS)
    tickets = {name: simulator.new_ticket() for name in "ABCDEFGH"}
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        _insert(conn, "accounts", id=1, name="acme", created_at=NOW)
        _insert(conn, "users", id=1, account_id=1, created_at=NOW)
        _insert(
            conn,
            "account_settings",
            account_id=1,
            cw_resolved_status_id=42,
            cw_escalated_status_id=43,
        )
        _insert(
            conn,
            "psa_connections",
            id=1,
            account_id=1,
            provider="connectwise",
            site_url=simulator.url,
            company_id="ACME",
            credentials_encrypted=sealed,
            is_active=True,
            created_at=NOW,
        )
        for n, name in enumerate("ABCDEFGH", start=1):
            local = name == "H"
            _insert(
                conn,
                "ai_sessions",
                id=n,
                account_id=1,
                user_id=1,
                session_type="chat",
                intake_type="free_text",
                intake_content='{"text": "printer"}',
                conversation_messages="[]",
                psa_connection_id=None if local else 1,
                psa_ticket_id=None if local else tickets[name],
                status="active",
                state_version=1,
                created_at=NOW,
                updated_at=NOW,
            )
        jobs = {
            "queued": _job(conn, 1, "resolve", "queued", "draft", delivery_id="old-message"),
            # caught mid-post by the upgrade: its note may be (here: is) on the ticket
            "posting": _job(conn, 2, "resolve", "running", "post_note", post_started_at=NOW),
            "retrying": _job(
                conn,
                3,
                "escalate",
                "retrying",
                "transition_status",
                attempts=1,
                external_id="n-3",
                target_status_id=43,
                due_at=NOW,
            ),
            "closed": _job(
                conn, 4, "resolve", "succeeded", "done", outcome="resolved", finished_at=NOW
            ),
            # a second close of session 4 that the release before 0005 allowed
            "closed_again": _job(
                conn,
                4,
                "resolve",
                "succeeded",
                "done",
                outcome="resolved",
                finished_at=NOW,
                created_at=NOW - timedelta(minutes=5),
            ),
            "escalated": _job(
                conn, 5, "escalate", "succeeded", "done", outcome="escalated", finished_at=NOW
            ),
            "escalating_again": _job(
                conn, 5, "escalate", "queued", "draft", created_at=NOW - timedelta(minutes=5)
            ),
            "failed_posted": _job(
                conn,
                6,
                "resolve",
                "failed",
                "verify",
                external_id="n-6",
                target_status_id=42,
                post_started_at=NOW,
                error_code="status_verification_failed",
                error_message="x",
                finished_at=NOW,
            ),
            "failed_before": _job(
                conn,
                7,
                "resolve",
                "failed",
                "post_note",
                error_code="status_not_found",
                error_message="x",
                finished_at=NOW,
            ),
            "local": _job(conn, 8, "resolve", "queued", "finalize"),
        }
        for table in ("accounts", "users", "psa_connections", "ai_sessions"):  # ids given above
            conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 100)"))
    engine.dispose()

    migrate.upgrade(url)  # never aborts on data

    # While the roll-out runs, the previous release's API still creates jobs its own way.
    rolling = simulator.new_ticket()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        _insert(
            conn,
            "ai_sessions",
            id=9,
            account_id=1,
            user_id=1,
            session_type="chat",
            intake_type="free_text",
            intake_content='{"text": "printer"}',
            conversation_messages="[]",
            psa_connection_id=1,
            psa_ticket_id=rolling,
            status="active",
            state_version=1,
            created_at=NOW,
            updated_at=NOW,
        )
        jobs["from_the_old_api"] = _job(
            conn, 9, "resolve", "queued", "draft", due_at=NOW, tenant="psa:1", version=0
        )
        own = conn.execute(
            sa.text("SELECT psa_connection_id, psa_ticket_id FROM writeback_jobs WHERE id = :id"),
            {"id": jobs["from_the_old_api"]},
        ).one()
    engine.dispose()
    assert tuple(own) == (1, rolling)  # the ticket its session names, as this release records

    container = bootstrap.build(load_settings(env))
    issued = container.accounts.create_token(1)
    api = Api(flask_sender(create_app(container).test_client(), issued.token), issued.token)
    with container.uow() as tx:
        connection = tx.connections.get(1)
        assert connection is not None
    marker = f"psa-writeback ref {jobs['posting'].replace('-', '')[:16]}"
    container.registry.build(connection).post_note(
        tickets["B"], f"## Fix\nRestarted.\n\n— {marker}", NoteType.RESOLUTION
    )
    duplicate = api.get(f"/jobs/{jobs['escalating_again']}")
    assert duplicate["state"] == "failed" and duplicate["error"]["code"] == "duplicate_close"
    retried = api.post(f"/jobs/{jobs['escalating_again']}/retry", expect=409)
    assert (retried["code"], retried["job_id"]) == ("duplicate_close", jobs["escalated"])
    assert api.get(f"/jobs/{jobs['closed_again']}")["state"] == "succeeded"  # history kept

    (tmp_path / "logs").mkdir()
    worker = celery_worker(env, tmp_path / "logs", beat=True)
    try:
        # Held and due: the sweep admits them; the one caught mid-post waits the settle time,
        # finds its note and posts none.
        for name in ("queued", "retrying", "local", "from_the_old_api"):
            assert api.wait_job(jobs[name], timeout=60)["state"] == "succeeded", name
        assert api.wait_job(jobs["posting"], timeout=120)["state"] == "succeeded"
        assert len(simulator.ticket(tickets["B"])["notes"]) == 1
        assert (
            api.wait_job(api.post(f"/jobs/{jobs['failed_posted']}/retry", expect=202)["job_id"])[
                "state"
            ]
            == "succeeded"
        )
        assert len(simulator.ticket(tickets["F"])["notes"]) == 0  # its note was not re-posted
        # A job that failed before posting blocks nothing: the session is posted again.
        again = api.start(7)["job_id"]
        assert api.wait_job(again)["state"] == "succeeded"
    finally:
        worker.stop()
        container.close()
