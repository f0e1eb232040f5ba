"""Use cases behind the API and the CLI. Dependencies come in as keyword arguments."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from writeback.domain.drafting import Drafting
from writeback.domain.errors import (
    AlreadyClosed,
    Conflict,
    InvalidInput,
    NotFound,
    PsaError,
    Unauthorized,
)
from writeback.domain.model import (
    SESSION_STATUS_BY_KIND,
    Account,
    AccountSettings,
    AiSession,
    ApiToken,
    Board,
    BoardStatus,
    Draft,
    JobCursor,
    JobEvent,
    JobFilter,
    JobKind,
    JobState,
    PsaConnection,
    StatusMapping,
    Step,
    User,
    WritebackJob,
)
from writeback.domain.ports import (
    Clock,
    CredentialSealer,
    JobFeed,
    JobQueue,
    ProviderRegistry,
    PsaProvider,
    UnitOfWork,
    UnitOfWorkFactory,
)

log = logging.getLogger(__name__)

TOKEN_PREFIX = "wb_"


@dataclass(frozen=True)
class Principal:
    account_id: int
    user_id: int


@dataclass(frozen=True)
class IssuedToken:
    account_id: int
    user_id: int
    token: str


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


def _issue_token(uow: Any, account_id: int, clock: Clock) -> IssuedToken:
    user = User(account_id=account_id, created_at=clock())
    uow.accounts.add_user(user)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    assert user.id is not None
    uow.accounts.add_token(
        ApiToken(
            account_id=account_id, user_id=user.id, token_hash=hash_token(token), created_at=clock()
        )
    )
    return IssuedToken(account_id=account_id, user_id=user.id, token=token)


def create_account(name: str, *, uow: UnitOfWorkFactory, clock: Clock) -> IssuedToken:
    if not name.strip():
        raise InvalidInput("name", "name must not be empty")
    with uow() as tx:
        account = Account(name=name.strip(), created_at=clock())
        tx.accounts.add_account(account)
        assert account.id is not None
        issued = _issue_token(tx, account.id, clock)
        tx.commit()
    return issued


def create_token(account_id: int, *, uow: UnitOfWorkFactory, clock: Clock) -> IssuedToken:
    with uow() as tx:
        if tx.accounts.get_account(account_id) is None:
            raise NotFound(f"Account {account_id} does not exist.")
        issued = _issue_token(tx, account_id, clock)
        tx.commit()
    return issued


def authenticate(token: str, *, uow: UnitOfWorkFactory) -> Principal:
    with uow() as tx:
        found = tx.accounts.token_by_hash(hash_token(token))
        if found is None:
            raise Unauthorized("The bearer token is not valid.")
        return Principal(account_id=found.account_id, user_id=found.user_id)


# PSA connections


def create_connection(
    principal: Principal,
    *,
    provider: str,
    site_url: str,
    company_id: str,
    credentials: dict[str, str],
    uow: UnitOfWorkFactory,
    sealer: CredentialSealer,
    registry: ProviderRegistry,
    check_url: Callable[[str], str],
    clock: Clock,
) -> PsaConnection:
    fields = registry.credential_fields(provider)
    if fields is None:
        raise InvalidInput("provider", f"Unknown PSA provider {provider!r}.")
    missing = [f for f in fields if not credentials.get(f)]
    if missing:
        raise InvalidInput(f"credentials.{missing[0]}", f"credentials.{missing[0]} is required")
    url = check_url(site_url)  # the SSRF guard: https, public addresses only
    connection = PsaConnection(
        account_id=principal.account_id,
        provider=provider,
        site_url=url,
        company_id=company_id,
        credentials_encrypted=sealer.seal({f: credentials[f] for f in fields}),
        created_at=clock(),
    )
    with uow() as tx:
        tx.connections.add(connection)
        tx.commit()
    log.info("psa connection %s created (%s)", connection.id, provider)
    return connection


def get_connection(
    principal: Principal, connection_id: int, *, uow: UnitOfWorkFactory
) -> PsaConnection:
    with uow() as tx:
        connection = tx.connections.get(connection_id, principal.account_id)
        if connection is None:
            raise NotFound(f"PSA connection {connection_id} not found.")
        return connection


def _connection(tx: UnitOfWork, principal: Principal, connection_id: int) -> PsaConnection:
    connection = tx.connections.get(connection_id, principal.account_id)
    if connection is None:
        raise NotFound(f"PSA connection {connection_id} not found.")
    return connection


def get_status_map(
    principal: Principal, connection_id: int, *, uow: UnitOfWorkFactory
) -> list[StatusMapping]:
    with uow() as tx:
        _connection(tx, principal, connection_id)
        return tx.connections.status_map(connection_id)


def put_status_map(
    principal: Principal,
    connection_id: int,
    entries: Sequence[tuple[JobKind, int | None, int | str]],
    *,
    uow: UnitOfWorkFactory,
) -> list[StatusMapping]:
    """Replace the connection's map: (kind, board id or None for any board, status id or name).
    Names are resolved against the ticket's board when a job runs."""
    seen: set[tuple[JobKind, int | None]] = set()
    for index, (kind, board_id, _) in enumerate(entries):
        if (kind, board_id) in seen:
            raise InvalidInput(f"mappings.{index}", f"{kind} on board {board_id} is mapped twice")
        seen.add((kind, board_id))
    with uow() as tx:
        _connection(tx, principal, connection_id)
        mappings = [
            StatusMapping(
                connection_id=connection_id,
                kind=kind,
                board_id=board_id,
                status_id=status if isinstance(status, int) else None,
                status_name=status if isinstance(status, str) else None,
            )
            for kind, board_id, status in entries
        ]
        tx.connections.replace_status_map(connection_id, mappings)
        tx.commit()
        return mappings


def _provider_for(
    principal: Principal, connection_id: int, uow: UnitOfWorkFactory, registry: ProviderRegistry
) -> PsaProvider:
    with uow() as tx:
        return registry.build(_connection(tx, principal, connection_id))


def list_boards(
    principal: Principal,
    connection_id: int,
    *,
    uow: UnitOfWorkFactory,
    registry: ProviderRegistry,
) -> list[Board]:
    return _provider_for(principal, connection_id, uow, registry).list_boards()


def list_board_statuses(
    principal: Principal,
    connection_id: int,
    board_id: int | None,
    *,
    uow: UnitOfWorkFactory,
    registry: ProviderRegistry,
) -> list[BoardStatus]:
    return _provider_for(principal, connection_id, uow, registry).list_statuses(board_id)


@dataclass(frozen=True)
class ConnectionCheck:
    ok: bool
    failed: str | None = None  # site_url, codebase, zone, credentials, client_id, ...
    message: str = "The PSA answered with these credentials."


def check_connection(
    principal: Principal,
    connection_id: int,
    *,
    uow: UnitOfWorkFactory,
    registry: ProviderRegistry,
) -> ConnectionCheck:
    try:
        _provider_for(principal, connection_id, uow, registry).check_connection()
    except PsaError as exc:
        return ConnectionCheck(ok=False, failed=exc.failed or "unknown", message=exc.message)
    except InvalidInput as exc:  # the site URL no longer passes the SSRF guard
        return ConnectionCheck(ok=False, failed=exc.field, message=exc.message)
    return ConnectionCheck(ok=True)


# Account settings


def get_settings(principal: Principal, *, uow: UnitOfWorkFactory) -> AccountSettings:
    with uow() as tx:
        return tx.accounts.settings(principal.account_id) or AccountSettings(principal.account_id)


def put_settings(
    principal: Principal, changes: dict[str, int | None], *, uow: UnitOfWorkFactory
) -> AccountSettings:
    with uow() as tx:
        settings = tx.accounts.settings(principal.account_id)
        if settings is None:
            settings = AccountSettings(principal.account_id)
            tx.accounts.add_settings(settings)
        for name, value in changes.items():
            setattr(settings, name, value)
        tx.commit()
        return settings


# Sessions


def create_session(
    principal: Principal,
    *,
    session_type: str,
    intake_type: str,
    intake_content: dict[str, Any],
    conversation_messages: list[dict[str, Any]],
    psa_connection_id: int | None,
    psa_ticket_id: str | None,
    uow: UnitOfWorkFactory,
    clock: Clock,
) -> AiSession:
    if (psa_connection_id is None) != (psa_ticket_id is None):
        field = "psa_ticket_id" if psa_ticket_id is None else "psa_connection_id"
        raise InvalidInput(
            field, "psa_connection_id and psa_ticket_id are set together or not at all"
        )
    now = clock()
    session = AiSession(
        account_id=principal.account_id,
        user_id=principal.user_id,
        session_type=session_type,
        intake_type=intake_type,
        intake_content=intake_content,
        conversation_messages=conversation_messages,
        psa_connection_id=psa_connection_id,
        psa_ticket_id=psa_ticket_id,
        created_at=now,
        updated_at=now,
    )
    with uow() as tx:
        if psa_connection_id is not None:
            connection = tx.connections.get(psa_connection_id, principal.account_id)
            if connection is None or not connection.is_active:
                raise InvalidInput("psa_connection_id", "No active PSA connection with that id.")
        tx.sessions.add(session)
        tx.commit()
    return session


def update_session(
    principal: Principal,
    session_id: int,
    changes: dict[str, Any],
    *,
    uow: UnitOfWorkFactory,
    clock: Clock,
) -> AiSession:
    """Change what the session says (the chat goes on); every change is a new state_version,
    and a new state means new drafts."""
    with uow() as tx:
        session = tx.sessions.get(session_id, principal.account_id)
        if session is None:
            raise NotFound(f"Session {session_id} not found.")
        # Checked before the entity changes: a query would autoflush a dangling foreign key.
        if changes.get("psa_connection_id") is not None:
            connection = tx.connections.get(changes["psa_connection_id"], principal.account_id)
            if connection is None or not connection.is_active:
                raise InvalidInput("psa_connection_id", "No active PSA connection with that id.")
        for name, value in changes.items():
            setattr(session, name, value)
        if (session.psa_connection_id is None) != (session.psa_ticket_id is None):
            raise InvalidInput(
                "psa_ticket_id",
                "psa_connection_id and psa_ticket_id are set together or not at all",
            )
        session.state_version += 1
        session.updated_at = clock()
        tx.commit()
        return session


def get_session(principal: Principal, session_id: int, *, uow: UnitOfWorkFactory) -> AiSession:
    with uow() as tx:
        session = tx.sessions.get(session_id, principal.account_id)
        if session is None:
            raise NotFound(f"Session {session_id} not found.")
        return session


# Writeback jobs


def request_writeback(
    principal: Principal,
    session_id: int,
    kind: JobKind,
    markdown: str | None,
    *,
    uow: UnitOfWorkFactory,
    queue: JobQueue,
    clock: Clock,
    enqueue_grace: float,
    feed: JobFeed | None = None,
) -> WritebackJob:
    """Create the job row, commit, then enqueue. One in-flight job per session is enforced by a
    partial unique index; the loser of a race gets JobInFlight with the winner's id."""
    now = clock()
    with uow() as tx:
        session = tx.sessions.get(session_id, principal.account_id)
        if session is None:
            raise NotFound(f"Session {session_id} not found.")
        closed_as = SESSION_STATUS_BY_KIND[kind]
        if session.status == closed_as:
            raise AlreadyClosed(
                f"Session {session_id} is already {closed_as}.", f"already_{closed_as}"
            )
        job = WritebackJob(
            account_id=principal.account_id,
            session_id=session_id,
            kind=kind,
            markdown=markdown,
            created_at=now,
            updated_at=now,
            due_at=now + timedelta(seconds=enqueue_grace),
        )
        tx.jobs.add(job)  # the partial unique index refuses a second in-flight job: JobInFlight
        tx.jobs.add_event(JobEvent(job_id=job.id, at=now, step=Step.DRAFT, event="created"))
        tx.commit()
        _publish(feed, job)
    try:
        queue.enqueue(job.id, Step.DRAFT)
    except Exception:
        # The row is committed and due: the sweeper enqueues it once the broker is back.
        log.exception("enqueue of job %s failed; left for the sweeper", job.id)
    return job


def _reread(uow: UnitOfWorkFactory, job_id: str) -> WritebackJob:
    with uow() as tx:
        job = tx.jobs.get(job_id)
        assert job is not None
        return job


def _publish(feed: JobFeed | None, job: WritebackJob) -> None:
    """After a committed transition: pollers and event streams learn of it now."""
    if feed is not None:
        feed.publish(job, ())


def get_job(principal: Principal, job_id: str, *, uow: UnitOfWorkFactory) -> WritebackJob:
    with uow() as tx:
        job = tx.jobs.get(job_id, principal.account_id)
        if job is None:
            raise NotFound(f"Job {job_id} not found.")
        return job


def job_events(principal: Principal, job_id: str, *, uow: UnitOfWorkFactory) -> Sequence[JobEvent]:
    with uow() as tx:
        if tx.jobs.get(job_id, principal.account_id) is None:
            raise NotFound(f"Job {job_id} not found.")
        return tx.jobs.events(job_id)


def list_jobs(
    principal: Principal,
    where: JobFilter,
    after: JobCursor | None,
    limit: int,
    *,
    uow: UnitOfWorkFactory,
) -> tuple[Sequence[WritebackJob], JobCursor | None]:
    """One page of the caller's jobs, newest first, and the cursor of the next page."""
    scoped = replace(where, account_id=principal.account_id)
    with uow() as tx:
        page = tx.jobs.find(scoped, after, limit + 1)
    if len(page) <= limit:
        return page, None
    last = page[limit - 1]
    return page[:limit], JobCursor(created_at=last.created_at, id=last.id)


def retry_step(job: WritebackJob) -> Step:
    """Where a failed job resumes: the step it stopped at, except that a failed verification
    runs the status transition again before verifying."""
    return Step.TRANSITION_STATUS if job.step == Step.VERIFY else Step(job.step)


def retry_job(
    job_id: str,
    *,
    account_id: int | None,
    uow: UnitOfWorkFactory,
    queue: JobQueue,
    clock: Clock,
    enqueue_grace: float,
    feed: JobFeed | None = None,
) -> WritebackJob:
    """Re-run a failed job from where it stopped. A posted note is never posted again: the job
    keeps its note id and its marker."""
    now = clock()
    with uow() as tx:
        job = tx.jobs.get(job_id, account_id)
        if job is None:
            raise NotFound(f"Job {job_id} not found.")
        if job.state != JobState.FAILED:
            raise Conflict(
                f"Job {job_id} is {job.state}; only failed jobs can be retried.", "job_not_failed"
            )
        session = tx.sessions.get(job.session_id)
        closed_as = SESSION_STATUS_BY_KIND[JobKind(job.kind)]
        if session is not None and session.status == closed_as:
            raise AlreadyClosed(
                f"Session {job.session_id} is already {closed_as}.", f"already_{closed_as}"
            )
        step = retry_step(job)
        if not tx.jobs.requeue_failed(job_id, step, now, now + timedelta(seconds=enqueue_grace)):
            raise Conflict(f"Job {job_id} changed while being retried.", "job_not_failed")
        tx.jobs.add_event(
            JobEvent(
                job_id=job_id, at=now, step=step, event="retried", detail={"from_step": str(step)}
            )
        )
        tx.commit()
        job = tx.jobs.get(job_id)
        assert job is not None
    if feed is not None:  # the row as requeue_failed's UPDATE left it, not the object we hold
        feed.publish(_reread(uow, job_id), ())
    try:
        queue.enqueue(job_id, step)
    except Exception:
        log.exception("enqueue of retried job %s failed; left for the sweeper", job_id)
    return job


def preview(
    principal: Principal,
    session_id: int,
    kind: JobKind,
    *,
    uow: UnitOfWorkFactory,
    drafting: Drafting,
) -> tuple[Draft, bool]:
    """The draft a post with no markdown would use, and whether it came from the cache."""
    with uow() as tx:
        session = tx.sessions.get(session_id, principal.account_id)
        if session is None:
            raise NotFound(f"Session {session_id} not found.")
        return drafting.draft(tx, kind, session)
