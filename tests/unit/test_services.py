"""Use cases behind the API: tenancy, conflicts, and the job row committed before enqueue."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import pytest

from tests.fakes import FakeSealer
from tests.unit.conftest import World
from writeback.domain.accounts import Principal, hash_token
from writeback.domain.errors import AlreadyClosed, InvalidInput, JobInFlight, NotFound, Unauthorized
from writeback.domain.model import JobKind, JobState, SessionStatus, Step
from writeback.domain.site_url import HostPolicy, check_site_url


def test_tokens_are_stored_only_as_hashes_and_authenticate(world: World) -> None:
    issued = world.accounts.create_token(world.principal.account_id)
    assert issued.token.startswith("wb_") and len(issued.token) > 40
    assert issued.token not in world.store.tokens
    assert hash_token(issued.token) in world.store.tokens
    principal = world.accounts.authenticate(issued.token)
    assert principal == Principal(world.principal.account_id, issued.user_id)
    with pytest.raises(Unauthorized):
        world.accounts.authenticate(issued.token + "x")


def test_token_for_unknown_account_is_not_found(world: World) -> None:
    with pytest.raises(NotFound):
        world.accounts.create_token(999_999)


def test_other_accounts_objects_answer_like_missing_ones(world: World) -> None:
    session_id = world.session(ticket_id=None)
    job_id = world.request(session_id)
    other = world.accounts.create_account("other")
    stranger = Principal(other.account_id, other.user_id)
    with pytest.raises(NotFound):
        world.sessions.get(stranger, session_id)
    with pytest.raises(NotFound):
        world.jobs.get(stranger, job_id)
    with pytest.raises(NotFound):
        world.connections.get(stranger, world.connection_id)
    with pytest.raises(NotFound):
        world.jobs.request_writeback(stranger, session_id, JobKind.RESOLVE, "x")


def test_second_post_while_a_job_is_in_flight_conflicts_with_its_id(world: World) -> None:
    session_id = world.session(ticket_id=None)
    first = world.request(session_id)
    with pytest.raises(JobInFlight) as caught:
        world.request(session_id, JobKind.ESCALATE)
    assert caught.value.job_id == first
    assert len(world.store.jobs) == 1


def test_resolving_a_resolved_session_conflicts(world: World) -> None:
    session_id = world.session(ticket_id=None)
    world.run(world.request(session_id))
    with pytest.raises(AlreadyClosed) as caught:
        world.request(session_id)
    assert caught.value.code == "already_resolved"
    # escalating a resolved session is still allowed, as in the seed
    world.run(world.request(session_id, JobKind.ESCALATE))
    assert world.store.sessions[session_id].status == SessionStatus.ESCALATED
    with pytest.raises(AlreadyClosed) as again:
        world.request(session_id, JobKind.ESCALATE)
    assert again.value.code == "already_escalated"


def test_job_is_committed_and_enqueued_from_the_draft_step(world: World) -> None:
    job_id = world.request(world.session(ticket_id=None))
    assert world.queue.enqueued == [(job_id, Step.DRAFT)]
    job = world.store.jobs[job_id]
    assert job.state == JobState.QUEUED and job.message_id == world.queue.sent[0][2]


def test_broker_down_at_enqueue_still_answers_with_the_queued_job(world: World) -> None:
    world.queue.broken = True
    job_id = world.request(world.session(ticket_id=None))
    job = world.job(job_id)
    assert job.state == JobState.QUEUED and job.held  # the scheduler sends it when it can
    world.queue.broken = False
    world.scheduler.tick()
    assert world.queue.enqueued == [(job_id, Step.DRAFT)]


def test_session_needs_connection_and_ticket_together(world: World) -> None:
    with pytest.raises(InvalidInput) as caught:
        world.sessions.create(
            world.principal,
            session_type="chat",
            intake_type="free_text",
            intake_content={},
            conversation_messages=[],
            psa_connection_id=world.connection_id,
            psa_ticket_id=None,
        )
    assert caught.value.field == "psa_ticket_id"


def test_session_cannot_link_another_accounts_connection(world: World) -> None:
    other = world.accounts.create_account("other")
    with pytest.raises(InvalidInput) as caught:
        world.sessions.create(
            Principal(other.account_id, other.user_id),
            session_type="chat",
            intake_type="free_text",
            intake_content={},
            conversation_messages=[],
            psa_connection_id=world.connection_id,
            psa_ticket_id="1",
        )
    assert caught.value.field == "psa_connection_id"


def _connect(world: World, **overrides: object) -> object:
    args: dict[str, object] = dict(
        provider="connectwise",
        site_url="https://api-na.myconnectwise.net",
        company_id="ACME",
        credentials={"public_key": "pub", "private_key": "secret-priv", "client_id": "cid"},
    )
    args.update(overrides)
    connections = replace(world.connections, check_url=partial(check_site_url, policy=HostPolicy()))
    return connections.create(world.principal, **args)  # type: ignore[arg-type]


def test_connection_credentials_are_sealed_not_stored_plain(world: World) -> None:
    connection = _connect(world)
    stored = world.store.connections[connection.id]  # type: ignore[index]
    assert stored is not None and b"secret-priv" not in stored.credentials_encrypted
    assert FakeSealer().open(stored.credentials_encrypted)["private_key"] == "secret-priv"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"provider": "freshdesk"}, "provider"),
        ({"credentials": {"public_key": "p", "client_id": "c"}}, "credentials.private_key"),
        ({"site_url": "http://api-na.myconnectwise.net"}, "site_url"),
        ({"site_url": "https://127.0.0.1"}, "site_url"),
    ],
)
def test_connection_input_errors_name_the_field(
    world: World, overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        _connect(world, **overrides)
    assert caught.value.field == field
