"""Races decided by PostgreSQL, and steps that run twice, against the real database and the
simulator over HTTP."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from datetime import timedelta

import pytest
from flask.testing import FlaskClient

from tests.integration.conftest import flask_sender
from tests.support import Api, Simulator
from writeback import bootstrap
from writeback.domain.accounts import Principal
from writeback.domain.errors import AlreadyClosed, JobInFlight
from writeback.domain.lease import LeaseKeeper
from writeback.domain.model import (
    PIPELINE,
    AccountSettings,
    JobKind,
    JobState,
    Step,
    WritebackJob,
    utcnow,
)
from writeback.domain.pipeline import Action, WritebackPipeline
from writeback.domain.scheduler import Scheduler
from writeback.domain.status_targets import StatusCatalog

pytestmark = pytest.mark.integration


def test_concurrent_posts_for_one_session_make_exactly_one_job(
    container: bootstrap.Container, flask_client: FlaskClient, worker: object
) -> None:
    issued = container.accounts.create_account(f"race-{uuid.uuid4().hex[:6]}")
    # One test client per thread: Flask's test client is not shared across threads.
    apis = [
        Api(flask_sender(flask_client.application.test_client(), issued.token), issued.token)
        for _ in range(4)
    ]
    for _ in range(10):
        session_id = apis[0].session()
        barrier = threading.Barrier(len(apis))
        answers: list[dict[str, object]] = []  # filled by the threads

        def post(client: Api, sid: int, barrier: threading.Barrier, into: list[object]) -> None:
            barrier.wait()
            into.append(client.start(sid, expect=None))

        threads = [
            threading.Thread(target=post, args=(client, session_id, barrier, answers))
            for client in apis
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        accepted = [a for a in answers if "code" not in a]
        # in flight, or already done when the first job was quick: either way it is named
        refused = [a for a in answers if a.get("code") in ("job_in_flight", "already_resolved")]
        assert len(accepted) == 1 and len(refused) == len(apis) - 1, answers
        assert {a["job_id"] for a in refused} == {accepted[0]["job_id"]}


def test_the_partial_unique_index_refuses_a_second_in_flight_job(
    container: bootstrap.Container, api: Api
) -> None:
    """Bypass the service's friendly check: the database alone must refuse."""
    session_id = api.session()
    with container.uow() as tx:
        session = tx.sessions.get(session_id)
        assert session is not None
        account_id = session.account_id

    def job() -> WritebackJob:
        now = utcnow()
        return WritebackJob(
            account_id=account_id,
            session_id=session_id,
            kind=JobKind.RESOLVE,
            tenant=f"local:{account_id}",
            created_at=now,
            updated_at=now,
            due_at=now + timedelta(hours=1),
        )

    with container.uow() as tx:
        first = job()
        tx.jobs.add(first)
        tx.commit()
    with container.uow() as tx, pytest.raises(JobInFlight) as caught:
        tx.jobs.add(job())
    assert caught.value.job_id == first.id
    with container.uow() as tx:  # once it succeeded, the session is closed for resolves
        done = tx.jobs.get(first.id)
        assert done is not None
        done.state = JobState.SUCCEEDED
        assert tx.jobs.save(done)
        tx.commit()
    with container.uow() as tx, pytest.raises(AlreadyClosed) as closed:
        tx.jobs.add(job())
    assert (closed.value.code, closed.value.job_id) == ("already_resolved", first.id)


def test_every_step_run_twice_on_postgres_and_http_gives_one_note_and_one_outcome(
    container: bootstrap.Container, simulator: Simulator
) -> None:
    """Each step's message delivered twice (a redelivery after the first completed): the same
    end state as one delivery, with one note on the ticket."""
    issued = container.accounts.create_account(f"twice-{uuid.uuid4().hex[:6]}")
    principal = Principal(issued.account_id, issued.user_id)
    connection = container.connections.create(
        principal,
        provider="connectwise",
        site_url=simulator.url,
        company_id="ACME",
        credentials={"public_key": "pub-key", "private_key": "priv-key", "client_id": "c"},
    )
    with container.uow() as tx:
        tx.accounts.add_settings(AccountSettings(issued.account_id, 42, 43))
        tx.commit()
    ticket_id = simulator.new_ticket()
    session = container.sessions.create(
        principal,
        session_type="chat",
        intake_type="free_text",
        intake_content={"text": "t"},
        conversation_messages=[],
        psa_connection_id=connection.id,
        psa_ticket_id=ticket_id,
    )
    assert session.id is not None

    sent: list[tuple[str, Step, str]] = []

    class Recorded:
        """The deployment's queue, except that this test is the worker: sending records. Its
        message ids carry the broker's epoch, so the running worker's sweeper does not take
        them for lost and send them again."""

        def new_message_id(self) -> str:
            return container.queue.new_message_id()

        def lost(self, message_id: str) -> bool:
            return container.queue.lost(message_id)

        def enqueue(self, job_id: str, step: Step, message_id: str) -> None:
            sent.append((job_id, step, message_id))

    queue = Recorded()
    policy = container.settings.retry
    scheduler = Scheduler(uow=container.uow, queue=queue, policy=policy)
    jobs = dataclasses.replace(container.jobs, scheduler=scheduler)
    pipeline = WritebackPipeline(
        uow=container.uow,
        queue=queue,
        scheduler=scheduler,
        registry=container.registry,
        drafting=container.drafting,
        statuses=StatusCatalog(utcnow),
        policy=policy,
        leases=LeaseKeeper(uow=container.uow, lease=30),
        sleep=time.sleep,
    )
    job = jobs.request_writeback(principal, session.id, JobKind.ESCALATE, "## Problem\nx")
    for job_id, step, message_id in sent:  # grows as each step sends the next
        assert pipeline.run_step(job_id, step, message_id).action is not Action.SKIPPED
        assert pipeline.run_step(job_id, step, message_id).action is Action.SKIPPED
    assert [step for _, step, _ in sent] == list(PIPELINE)

    with container.uow() as tx:
        done = tx.jobs.get(job.id)
        assert done is not None
        assert (done.state, done.step, done.outcome) == ("succeeded", "done", "escalated")
    ticket = simulator.ticket(ticket_id)
    assert len(ticket["notes"]) == 1 and ticket["status"]["id"] == 43
    assert [c["method"] for c in simulator.calls(ticket_id)].count("POST") == 1
