"""SQLAlchemy implementations of the domain's repositories and unit of work."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from writeback.adapters.db import tables
from writeback.domain import ports
from writeback.domain.errors import Conflict, JobInFlight, StoreUnavailable
from writeback.domain.model import (
    IN_FLIGHT_STATES,
    SESSION_STATUS_BY_KIND,
    WAITING_STATES,
    Account,
    AccountSettings,
    AiSession,
    ApiToken,
    Draft,
    JobCursor,
    JobEvent,
    JobFilter,
    JobKind,
    JobState,
    PsaConnection,
    StatusMapping,
    Step,
    StepLoad,
    User,
    WritebackJob,
    closed_conflict,
    utcnow,
)

log = logging.getLogger(__name__)
jobs_t = tables.writeback_jobs
_IN_FLIGHT = [str(s) for s in IN_FLIGHT_STATES]
_WAITING = [str(s) for s in WAITING_STATES]


def _owned(session: Session, cls: Any, key: Any, account_id: int | None) -> Any:
    obj = session.get(cls, key)
    if obj is None or (account_id is not None and obj.account_id != account_id):
        return None  # another account's object is answered like a missing one
    return obj


class SqlAccountRepository:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add_account(self, account: Account) -> None:
        self._s.add(account)
        self._s.flush()

    def get_account(self, account_id: int) -> Account | None:
        return self._s.get(Account, account_id)

    def add_user(self, user: User) -> None:
        self._s.add(user)
        self._s.flush()

    def add_token(self, token: ApiToken) -> None:
        self._s.add(token)

    def token_by_hash(self, token_hash: str) -> ApiToken | None:
        return self._s.scalars(sa.select(ApiToken).filter_by(token_hash=token_hash)).first()

    def settings(self, account_id: int) -> AccountSettings | None:
        return self._s.get(AccountSettings, account_id)

    def add_settings(self, settings: AccountSettings) -> None:
        self._s.add(settings)


class SqlConnectionRepository:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, connection: PsaConnection) -> None:
        self._s.add(connection)
        self._s.flush()

    def get(self, connection_id: int, account_id: int | None = None) -> PsaConnection | None:
        return _owned(self._s, PsaConnection, connection_id, account_id)  # type: ignore[no-any-return]

    def status_map(self, connection_id: int) -> list[StatusMapping]:
        query = sa.select(StatusMapping).filter_by(connection_id=connection_id)
        return list(self._s.scalars(query.order_by(tables.status_mappings.c.id)))

    def replace_status_map(self, connection_id: int, mappings: Sequence[StatusMapping]) -> None:
        self._s.execute(
            sa.delete(tables.status_mappings).where(
                tables.status_mappings.c.connection_id == connection_id
            )
        )
        self._s.add_all(mappings)
        self._s.flush()

    # Key rotation (`writeback keys rotate`): sealed credentials by id, keyset-paged, and a
    # replacement that only lands on the ciphertext it was computed from.
    _sealed = tables.psa_connections.c

    def count_sealed(self) -> int:
        return int(self._s.scalar(sa.select(sa.func.count(self._sealed.id))) or 0)

    def sealed_after(self, after_id: int, limit: int) -> list[tuple[int, bytes]]:
        query = (
            sa.select(self._sealed.id, self._sealed.credentials_encrypted)
            .where(self._sealed.id > after_id)
            .order_by(self._sealed.id)
            .limit(limit)
        )
        return [(row.id, row.credentials_encrypted) for row in self._s.execute(query)]

    def replace_sealed(self, connection_id: int, old: bytes, new: bytes) -> bool:
        """False when the credentials changed since `old` was read (someone re-saved them)."""
        result = self._s.execute(
            sa.update(tables.psa_connections)
            .where(self._sealed.id == connection_id)
            .where(self._sealed.credentials_encrypted == old)
            .values(credentials_encrypted=new)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


class SqlSessionRepository:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, session: AiSession) -> None:
        self._s.add(session)
        self._s.flush()

    def get(
        self, session_id: int, account_id: int | None = None, *, lock: bool = False
    ) -> AiSession | None:
        session = self._s.get(AiSession, session_id, with_for_update=lock)
        if session is None or (account_id is not None and session.account_id != account_id):
            return None
        return session

    def close(self, session_id: int, kind: JobKind, markdown: str, now: datetime) -> None:
        """Record the posted document and flip the status: one statement, no load."""
        sessions_t = tables.ai_sessions
        document, closed_at = (
            ("resolution_note_markdown", "resolved_at")
            if kind is JobKind.RESOLVE
            else ("escalation_package_markdown", "escalated_at")
        )
        self._s.execute(
            sa.update(sessions_t)
            .where(sessions_t.c.id == session_id)
            .values(
                {
                    "status": str(SESSION_STATUS_BY_KIND[kind]),
                    document: markdown,
                    closed_at: now,
                    "state_version": sessions_t.c.state_version + 1,
                    "updated_at": now,
                }
            )
        )


def _job(values: Mapping[Any, Any]) -> WritebackJob:
    data = dict(values)
    data.update(kind=JobKind(data["kind"]), state=JobState(data["state"]), step=Step(data["step"]))
    return WritebackJob(**data, loaded_version=data["version"])


def _event(row: Any) -> JobEvent:
    return JobEvent(**dict(row._mapping))


# What a transition may change: everything but identity, creation and the job's ticket.
_FIXED = {"id", "account_id", "session_id", "kind", "tenant", "created_at", "psa_connection_id"}
_MUTABLE = [c.name for c in jobs_t.columns if c.name not in _FIXED | {"psa_ticket_id"}]
# The hot path's statements, built once: building a statement costs more CPU than its round
# trip, and a prebuilt one keeps its cache key.
_SAVE = (
    sa.update(jobs_t)
    .where(jobs_t.c.id == sa.bindparam("job_id"))
    .where(jobs_t.c.version == sa.bindparam("loaded_version"))
    .values({name: sa.bindparam(f"new_{name}") for name in _MUTABLE})
)
_NOW = tables.db_now()
# A fenced write lands only while the lease is out; a takeover only once it has run out.
_SAVE_LEASE_ALIVE = _SAVE.where(jobs_t.c.lease_until > _NOW)
_SAVE_LEASE_EXPIRED = _SAVE.where(jobs_t.c.lease_until < _NOW)
_PARTS = ((jobs_t, "j_"), (tables.ai_sessions, "s_"), (tables.psa_connections, "c_"))
_FOR_STEP = (
    sa.select(
        *(c.label(prefix + c.name) for table, prefix in _PARTS for c in table.c),
        _NOW.label("db_now"),
    )
    .select_from(
        jobs_t.outerjoin(
            tables.ai_sessions, tables.ai_sessions.c.id == jobs_t.c.session_id
        ).outerjoin(
            tables.psa_connections,
            tables.psa_connections.c.id == jobs_t.c.psa_connection_id,
        )
    )
    .where(jobs_t.c.id == sa.bindparam("job_id"))
)
_RENEWED = tables.db_now(sa.bindparam("lease", type_=sa.Float))
_HEARTBEAT = (
    sa.update(jobs_t)
    .where(
        jobs_t.c.id == sa.bindparam("job_id"),
        jobs_t.c.message_id == sa.bindparam("owner"),
        jobs_t.c.state == str(JobState.RUNNING),
    )
    # Never shorter than it is: a fenced write may have lengthened it.
    .values(
        lease_until=sa.case((jobs_t.c.lease_until > _RENEWED, jobs_t.c.lease_until), else_=_RENEWED)
    )
)
_SENT_STAMP = (
    sa.update(jobs_t)
    .where(
        jobs_t.c.id == sa.bindparam("job_id"),
        jobs_t.c.message_id == sa.bindparam("sent"),
        jobs_t.c.sent_at.is_(None),
    )
    .values(sent_at=_NOW)
)
_ADD_EVENT = sa.insert(tables.job_events)
# Each matches a partial index exactly (tables.HELD, SENT, RUNNING, UNSENT).
_HELD = sa.text(tables.HELD)
_SENT = sa.text(tables.SENT)
_RUNNING = sa.text(tables.RUNNING)
_UNSENT = sa.text(tables.UNSENT)


class SqlJobRepository:
    """Core statements only: a job is a row in, a dataclass out, and every change goes through
    `save`, guarded by the version the job was loaded at."""

    def __init__(self, session: Session, changed: list[WritebackJob]) -> None:
        self._s = session
        self._changed = changed  # what the unit of work publishes once it commits

    def add(self, job: WritebackJob) -> None:
        values = {c.name: getattr(job, c.name) for c in jobs_t.columns}
        try:
            self._s.execute(sa.insert(jobs_t).values(**values))
        except IntegrityError:
            # A partial unique index refused it (a job in flight, or the session already closed
            # for this kind): the transaction is void, so roll back and name the job that won.
            self._s.rollback()
            raise self._conflict(job) from None
        job.loaded_version = job.version
        self._changed.append(job)

    def get(self, job_id: str, account_id: int | None = None) -> WritebackJob | None:
        query = sa.select(jobs_t).where(jobs_t.c.id == job_id)
        if account_id is not None:
            query = query.where(jobs_t.c.account_id == account_id)
        row = self._s.execute(query).first()
        return _job(row._mapping) if row else None

    def for_step(self, job_id: str) -> StepLoad | None:
        """The job with its session and that session's connection: one joined read."""
        row = self._s.execute(_FOR_STEP, {"job_id": job_id}).first()
        if row is None:
            return None
        job, session, connection = (
            {c.name: row._mapping[prefix + c.name] for c in table.c} for table, prefix in _PARTS
        )
        return StepLoad(
            _job(job),
            AiSession(**session) if session["id"] is not None else None,
            PsaConnection(**connection) if connection["id"] is not None else None,
            row._mapping["db_now"],
        )

    def save(
        self, job: WritebackJob, *, lease_alive: bool = False, lease_expired: bool = False
    ) -> bool:
        """Write the job's transition; False when someone else changed it since it was loaded
        (or its lease is not as asked, by the database's clock)."""
        params = {f"new_{name}": getattr(job, name) for name in _MUTABLE}
        params.update(job_id=job.id, loaded_version=job.loaded_version)
        statement = (
            _SAVE_LEASE_ALIVE if lease_alive else _SAVE_LEASE_EXPIRED if lease_expired else _SAVE
        )
        try:
            saved = self._s.execute(statement, params).rowcount == 1  # type: ignore[attr-defined]
        except IntegrityError:  # a requeue while another job of the session is open
            self._s.rollback()
            raise self._conflict(job) from None
        if saved:
            job.loaded_version = job.version
            self._changed.append(job)
        return bool(saved)

    def heartbeat(self, job_id: str, message_id: str, lease: float) -> bool:
        """Renew a running step's lease by the database's clock. Not a transition: the version
        stays, so the step's own result still saves."""
        params = {"job_id": job_id, "owner": message_id, "lease": lease}
        return self._s.execute(_HEARTBEAT, params).rowcount == 1  # type: ignore[attr-defined, no-any-return]

    def sent(self, job_id: str, message_id: str) -> None:
        self._s.execute(_SENT_STAMP, {"job_id": job_id, "sent": message_id})

    def ticket_holder(self, session_id: int) -> WritebackJob | None:
        query = (
            sa.select(jobs_t)
            .where(
                jobs_t.c.session_id == session_id,
                sa.or_(jobs_t.c.state.in_(_IN_FLIGHT), jobs_t.c.post_started_at.is_not(None)),
            )
            .order_by(jobs_t.c.created_at.desc())
        )
        row = self._s.execute(query).first()
        return _job(row._mapping) if row else None

    def _conflict(self, job: WritebackJob) -> Conflict:
        blocking = self.blocking(job.session_id, job.kind, excluding=job.id)
        if blocking is None:
            return JobInFlight("unknown")
        return closed_conflict(blocking)

    def blocking(
        self, session_id: int, kind: JobKind, excluding: str | None = None
    ) -> WritebackJob | None:
        """The job that keeps a new one of `kind` from starting: one in flight for the
        session, or one that closed (or may have posted for) the session in this kind."""
        query = sa.select(jobs_t).where(
            jobs_t.c.session_id == session_id,
            sa.or_(
                jobs_t.c.state.in_(_IN_FLIGHT),
                sa.and_(jobs_t.c.kind == str(kind), sa.text(tables.CLOSES_SESSION)),
            ),
        )
        if excluding is not None:
            query = query.where(jobs_t.c.id != excluding)
        row = self._s.execute(query.order_by(jobs_t.c.created_at.desc())).first()
        return _job(row._mapping) if row else None

    def occupied_slots(self, tenant: str) -> int | None:
        """Counted under the tenant's admission lock, held until this transaction ends: two
        admissions never both take the tenant's last slot. (SQLite runs one writer at a time.)"""
        if self._s.get_bind().dialect.name == "postgresql":
            lock = sa.func.pg_try_advisory_xact_lock(sa.func.hashtext(tenant))
            if not self._s.scalar(sa.select(lock)):
                return None
        query = sa.select(sa.func.count()).where(jobs_t.c.tenant == tenant, _SENT)
        return int(self._s.scalar(query) or 0)

    def _locked(self, query: Any) -> list[WritebackJob]:
        """The rows, locked until the transaction ends; rows another transaction holds are
        left for the next sweep."""
        rows = self._s.execute(query.with_for_update(skip_locked=True))
        return [_job(row._mapping) for row in rows]

    def tenants_waiting(self, now: datetime) -> dict[str, int]:
        """Tenants with held jobs due now, and how many admission slots each already uses."""
        due = sa.select(jobs_t.c.tenant).where(_HELD, jobs_t.c.due_at <= now).distinct()
        tenants = list(self._s.scalars(due))
        occupied = (
            sa.select(jobs_t.c.tenant, sa.func.count())
            .where(_SENT, jobs_t.c.tenant.in_(tenants))
            .group_by(jobs_t.c.tenant)
        )
        counts: dict[str, int] = dict(self._s.execute(occupied).tuples().all()) if tenants else {}
        return {tenant: counts.get(tenant, 0) for tenant in tenants}

    def held_due(self, tenant: str, now: datetime, limit: int) -> list[WritebackJob]:
        query = (
            sa.select(jobs_t)
            .where(jobs_t.c.tenant == tenant, _HELD, jobs_t.c.due_at <= now)
            .order_by(jobs_t.c.due_at, jobs_t.c.created_at)
            .limit(limit)
        )
        return self._locked(query)

    def lease_expired(self, now: datetime, limit: int) -> list[WritebackJob]:
        return self._locked(
            sa.select(jobs_t).where(_RUNNING, jobs_t.c.lease_until < now).limit(limit)
        )

    def unsent(self, committed_before: datetime, limit: int) -> list[WritebackJob]:
        query = (
            sa.select(jobs_t)
            .where(_UNSENT, jobs_t.c.updated_at < committed_before)
            .order_by(jobs_t.c.updated_at)
            .limit(limit)
        )
        return self._locked(query)

    def outstanding(self, limit: int) -> list[WritebackJob]:
        query = (
            sa.select(jobs_t)
            .where(_SENT, jobs_t.c.state.in_(_WAITING), jobs_t.c.sent_at.is_not(None))
            .order_by(jobs_t.c.sent_at)
            .limit(limit)
        )
        return self._locked(query)

    def record_sweep(self, now: datetime) -> None:
        sweeps = tables.sweeps
        self._s.execute(sa.update(sweeps).where(sweeps.c.name == "sweep").values(at=now))

    def last_sweep(self) -> datetime | None:
        sweeps = tables.sweeps
        return self._s.scalar(sa.select(sweeps.c.at).where(sweeps.c.name == "sweep"))

    def find(self, where: JobFilter, after: JobCursor | None, limit: int) -> list[WritebackJob]:
        query = self._filtered(sa.select(jobs_t), where)
        if after is not None:
            query = query.where(
                sa.tuple_(jobs_t.c.created_at, jobs_t.c.id) < (after.created_at, after.id)
            )
        query = query.order_by(jobs_t.c.created_at.desc(), jobs_t.c.id.desc()).limit(limit)
        return [_job(row._mapping) for row in self._s.execute(query)]

    def count(self, where: JobFilter) -> int:
        query = self._filtered(sa.select(sa.func.count()).select_from(jobs_t), where)
        return int(self._s.scalar(query) or 0)

    def count_by_state(self, job_ids: Sequence[str]) -> dict[JobState, int]:
        counts: dict[JobState, int] = {}
        for start in range(0, len(job_ids), 1000):  # bounded IN lists
            query = (
                sa.select(jobs_t.c.state, sa.func.count())
                .where(jobs_t.c.id.in_(job_ids[start : start + 1000]))
                .group_by(jobs_t.c.state)
            )
            for state, n in self._s.execute(query):
                counts[JobState(state)] = counts.get(JobState(state), 0) + n
        return counts

    @staticmethod
    def _filtered(query: Any, where: JobFilter) -> Any:
        if where.account_id is not None:
            query = query.where(jobs_t.c.account_id == where.account_id)
        if where.states:
            query = query.where(jobs_t.c.state.in_([str(s) for s in where.states]))
        if where.kinds:
            query = query.where(jobs_t.c.kind.in_([str(k) for k in where.kinds]))
        if where.created_before is not None:
            query = query.where(jobs_t.c.created_at < where.created_before)
        if where.connection_id is not None:
            sessions_t = tables.ai_sessions
            query = query.join(sessions_t, sessions_t.c.id == jobs_t.c.session_id).where(
                sessions_t.c.psa_connection_id == where.connection_id
            )
        return query

    def add_event(self, event: JobEvent) -> None:
        self._s.execute(
            _ADD_EVENT,
            {
                "job_id": event.job_id,
                "at": event.at,
                "step": str(event.step),
                "event": event.event,
                "detail": event.detail,
            },
        )

    def events(self, job_id: str, after_id: int = 0) -> list[JobEvent]:
        events_t = tables.job_events
        query = (
            sa.select(events_t)
            .where(events_t.c.job_id == job_id, events_t.c.id > after_id)
            .order_by(events_t.c.id)
        )
        return [_event(row) for row in self._s.execute(query)]


class SqlDraftRepository:
    def __init__(self, session: Session) -> None:
        self._s = session

    def get(self, key: str) -> Draft | None:
        row = self._s.execute(
            sa.select(tables.draft_cache).where(tables.draft_cache.c.key == key)
        ).first()
        if row is None:
            return None
        return Draft(markdown=row.markdown, drafter=row.drafter, usage=row.usage)

    def put(self, key: str, account_id: int, draft: Draft) -> None:
        exists = sa.select(tables.draft_cache.c.key).where(tables.draft_cache.c.key == key)
        if self._s.execute(exists).first() is None:  # two drafts of one state are equivalent
            self._s.execute(
                sa.insert(tables.draft_cache).values(
                    key=key,
                    account_id=account_id,
                    markdown=draft.markdown,
                    drafter=draft.drafter,
                    usage=draft.usage,
                    created_at=utcnow(),
                )
            )


class SqlAlchemyUnitOfWork:
    # Typed as the ports, as the domain sees them.
    accounts: ports.AccountRepository
    connections: ports.ConnectionRepository
    sessions: ports.SessionRepository
    jobs: ports.JobRepository
    drafts: ports.DraftRepository

    def __init__(self, factory: sessionmaker[Session], feed: ports.JobFeed | None = None) -> None:
        self._factory = factory
        self._feed = feed

    def __enter__(self) -> SqlAlchemyUnitOfWork:
        self._session = self._factory()
        self.accounts = SqlAccountRepository(self._session)
        self.connections = SqlConnectionRepository(self._session)
        self.sessions = SqlSessionRepository(self._session)
        self._changed: list[WritebackJob] = []
        self.jobs = SqlJobRepository(self._session, self._changed)
        self.drafts = SqlDraftRepository(self._session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Whatever was not committed explicitly is rolled back; loaded entities stay readable.
        self._session.close()
        if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
            # The database did not answer (refused, gone, restarting): a wait for our own
            # part, never a PSA attempt. Callers see it in the domain's words.
            raise StoreUnavailable(
                f"The database did not answer: {type(exc.orig).__name__}"
            ) from exc

    def now(self) -> datetime:
        now: datetime | None = self._session.scalar(sa.select(tables.db_now()))
        assert now is not None
        return now

    def commit(self) -> None:
        self._session.commit()
        # The jobs this transaction changed, as committed (the last write of each wins).
        changed = {job.id: job for job in self._changed}
        self._changed.clear()
        if self._feed is not None:
            for job in changed.values():
                self._feed.publish(job)

    def rollback(self) -> None:
        self._session.rollback()
        self._changed.clear()
