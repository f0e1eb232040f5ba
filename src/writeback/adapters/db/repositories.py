"""SQLAlchemy implementations of the domain's repositories and unit of work."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from writeback.adapters.db import tables
from writeback.domain.errors import JobInFlight
from writeback.domain.model import (
    IN_FLIGHT_STATES,
    Account,
    AccountSettings,
    AiSession,
    ApiToken,
    Draft,
    JobCursor,
    JobEvent,
    JobFilter,
    JobState,
    PsaConnection,
    StatusMapping,
    Step,
    User,
    WritebackJob,
    utcnow,
)

log = logging.getLogger(__name__)
jobs_t = tables.writeback_jobs
_IN_FLIGHT = [str(s) for s in IN_FLIGHT_STATES]


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

    def get(self, session_id: int, account_id: int | None = None) -> AiSession | None:
        return _owned(self._s, AiSession, session_id, account_id)  # type: ignore[no-any-return]


class SqlJobRepository:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, job: WritebackJob) -> None:
        self._s.add(job)
        try:
            self._s.flush()
        except IntegrityError:
            # The partial unique index refused a second in-flight job for this session: the
            # transaction is void, so roll back and report the job that won.
            self._s.rollback()
            log.info(
                "a second in-flight job for session %s was refused by the database", job.session_id
            )
            winner = self.in_flight_for_session(job.session_id)
            raise JobInFlight(winner.id if winner else "unknown") from None

    def get(self, job_id: str, account_id: int | None = None) -> WritebackJob | None:
        return _owned(self._s, WritebackJob, job_id, account_id)  # type: ignore[no-any-return]

    def in_flight_for_session(self, session_id: int) -> WritebackJob | None:
        query = sa.select(WritebackJob).where(
            jobs_t.c.session_id == session_id, jobs_t.c.state.in_(_IN_FLIGHT)
        )
        return self._s.scalars(query).first()

    def claim(
        self, job_id: str, step: Step, delivery_id: str, now: datetime, lease_until: datetime
    ) -> bool:
        stmt = (
            sa.update(jobs_t)
            .where(
                jobs_t.c.id == job_id,
                jobs_t.c.step == str(step),
                jobs_t.c.state.in_(_IN_FLIGHT),
                # unowned, a redelivery of our own message, or an owner whose lease ran out
                sa.or_(
                    jobs_t.c.delivery_id.is_(None),
                    jobs_t.c.delivery_id == delivery_id,
                    jobs_t.c.due_at <= now,
                ),
            )
            .values(
                state=str(JobState.RUNNING),
                attempts=jobs_t.c.attempts + 1,
                delivery_id=delivery_id,
                due_at=lease_until,
                updated_at=now,
            )
        )
        return self._s.execute(stmt).rowcount == 1  # type: ignore[attr-defined, no-any-return]

    def due(self, now: datetime, limit: int) -> Sequence[WritebackJob]:
        query = (
            sa.select(WritebackJob)
            .where(jobs_t.c.state.in_(_IN_FLIGHT), jobs_t.c.due_at <= now)
            .order_by(jobs_t.c.due_at)
            .limit(limit)
        )
        return self._s.scalars(query).all()

    def mark_redelivered(self, job_id: str, now: datetime, due_at: datetime) -> bool:
        stmt = (
            sa.update(jobs_t)
            .where(jobs_t.c.id == job_id, jobs_t.c.state.in_(_IN_FLIGHT), jobs_t.c.due_at <= now)
            .values(
                delivery_id=None,
                due_at=due_at,
                redeliveries=jobs_t.c.redeliveries + 1,
                updated_at=now,
            )
        )
        return self._s.execute(stmt).rowcount == 1  # type: ignore[attr-defined, no-any-return]

    def fail_lost(self, job_id: str, now: datetime, message: str) -> bool:
        stmt = (
            sa.update(jobs_t)
            .where(jobs_t.c.id == job_id, jobs_t.c.state.in_(_IN_FLIGHT), jobs_t.c.due_at <= now)
            .values(
                state=str(JobState.FAILED),
                error_code="delivery_lost",
                error_message=message,
                delivery_id=None,
                due_at=None,
                finished_at=now,
                updated_at=now,
            )
        )
        return self._s.execute(stmt).rowcount == 1  # type: ignore[attr-defined, no-any-return]

    def find(self, where: JobFilter, after: JobCursor | None, limit: int) -> Sequence[WritebackJob]:
        query = self._filtered(sa.select(WritebackJob), where)
        if after is not None:
            query = query.where(
                sa.tuple_(jobs_t.c.created_at, jobs_t.c.id) < (after.created_at, after.id)
            )
        query = query.order_by(jobs_t.c.created_at.desc(), jobs_t.c.id.desc()).limit(limit)
        return self._s.scalars(query).all()

    def count(self, where: JobFilter) -> int:
        query = self._filtered(sa.select(sa.func.count()).select_from(jobs_t), where)
        return int(self._s.scalar(query) or 0)

    @staticmethod
    def _filtered(query: Any, where: JobFilter) -> Any:
        if where.account_id is not None:
            query = query.where(jobs_t.c.account_id == where.account_id)
        if where.states:
            query = query.where(jobs_t.c.state.in_(where.states))
        if where.kinds:
            query = query.where(jobs_t.c.kind.in_(where.kinds))
        if where.created_before is not None:
            query = query.where(jobs_t.c.created_at < where.created_before)
        if where.connection_id is not None:
            sessions_t = tables.ai_sessions
            query = query.join(sessions_t, sessions_t.c.id == jobs_t.c.session_id).where(
                sessions_t.c.psa_connection_id == where.connection_id
            )
        return query

    def requeue_failed(self, job_id: str, step: Step, now: datetime, due_at: datetime) -> bool:
        stmt = (
            sa.update(jobs_t)
            .where(jobs_t.c.id == job_id, jobs_t.c.state == str(JobState.FAILED))
            .values(
                state=str(JobState.QUEUED),
                step=str(step),
                attempts=0,
                error_code=None,
                error_message=None,
                delivery_id=None,
                redeliveries=0,
                finished_at=None,
                due_at=due_at,
                updated_at=now,
            )
        )
        try:
            return self._s.execute(stmt).rowcount == 1  # type: ignore[attr-defined, no-any-return]
        except IntegrityError:
            self._s.rollback()  # the transaction is void, as in add()
            job = self.get(job_id)
            winner = self.in_flight_for_session(job.session_id) if job else None
            raise JobInFlight(winner.id if winner else "unknown") from None

    def add_event(self, event: JobEvent) -> None:
        self._s.add(event)

    def events(self, job_id: str) -> Sequence[JobEvent]:
        query = sa.select(JobEvent).filter_by(job_id=job_id).order_by(tables.job_events.c.id)
        return self._s.scalars(query).all()


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
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory

    def __enter__(self) -> SqlAlchemyUnitOfWork:
        self._session = self._factory()
        self.accounts = SqlAccountRepository(self._session)
        self.connections = SqlConnectionRepository(self._session)
        self.sessions = SqlSessionRepository(self._session)
        self.jobs = SqlJobRepository(self._session)
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

    def commit(self) -> None:
        self._session.commit()

    def rollback(self) -> None:
        self._session.rollback()
