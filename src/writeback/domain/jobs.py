"""Writeback jobs as the API and the CLI see them: start one, follow it, retry it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from writeback.domain.accounts import Principal
from writeback.domain.drafting import Drafting
from writeback.domain.errors import Conflict, NotFound
from writeback.domain.model import (
    Draft,
    JobCursor,
    JobEvent,
    JobFilter,
    JobKind,
    Step,
    TransitionRefused,
    WritebackJob,
    tenant_of,
)
from writeback.domain.ports import UnitOfWorkFactory
from writeback.domain.scheduler import Scheduler
from writeback.domain.sessions import owned_session

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobService:
    uow: UnitOfWorkFactory
    reads: UnitOfWorkFactory  # reads that need no transaction (polling)
    scheduler: Scheduler
    drafting: Drafting

    def request_writeback(
        self, principal: Principal, session_id: int, kind: JobKind, markdown: str | None
    ) -> WritebackJob:
        """Create the job and commit, then send its first message. The database decides every
        race: partial unique indexes allow one job in flight per session and one job that
        closes the session per kind, so a double submit can never post a second note. The job
        writes to the ticket its session names now: the session's row is locked until the job
        is committed, so an edit of its ticket waits, and then sees the job."""
        with self.uow() as tx:
            now = tx.now()
            session = owned_session(tx, principal, session_id, lock=True)
            if markdown is not None:
                self.drafting.check_technician(kind, session, markdown)
            connection_id = session.psa_connection_id if session.has_ticket else None
            job = WritebackJob(
                account_id=principal.account_id,
                session_id=session_id,
                kind=kind,
                tenant=tenant_of(connection_id, principal.account_id),
                psa_connection_id=connection_id,
                psa_ticket_id=session.psa_ticket_id if session.has_ticket else None,
                markdown=markdown,
                created_at=now,
                updated_at=now,
                due_at=now,
            )
            tx.jobs.add(job)  # raises the Conflict naming the job in the way
            tx.jobs.add_event(JobEvent(job.id, now, Step.DRAFT, "created"))
            # Last, so the tenant's admission lock is held only while nothing can wait.
            message_id = self.scheduler.admit_new(tx, job, now)
            if message_id is not None:
                tx.jobs.save(job)
            tx.commit()
        self._send(job, message_id)
        return job

    def get(self, principal: Principal, job_id: str) -> WritebackJob:
        with self.reads() as tx:
            job = tx.jobs.get(job_id, principal.account_id)
            if job is None:
                raise NotFound(f"Job {job_id} not found.")
            return job

    def events(self, principal: Principal, job_id: str, after_id: int = 0) -> list[JobEvent]:
        with self.reads() as tx:
            if tx.jobs.get(job_id, principal.account_id) is None:
                raise NotFound(f"Job {job_id} not found.")
            return tx.jobs.events(job_id, after_id)

    def list(
        self, principal: Principal, where: JobFilter, after: JobCursor | None, limit: int
    ) -> tuple[list[WritebackJob], JobCursor | None]:
        """One page of the caller's jobs, newest first, and the cursor of the next page."""
        scoped = replace(where, account_id=principal.account_id)
        with self.reads() as tx:
            page = tx.jobs.find(scoped, after, limit + 1)
        if len(page) <= limit:
            return page, None
        last = page[limit - 1]
        return page[:limit], JobCursor(created_at=last.created_at, id=last.id)

    def retry(self, job_id: str, account_id: int | None) -> WritebackJob:
        """Re-run a failed job from where it stopped. A posted note is never posted again: the
        job keeps its note id and its marker."""
        with self.uow() as tx:
            now = tx.now()
            job = tx.jobs.get(job_id, account_id)
            if job is None:
                raise NotFound(f"Job {job_id} not found.")
            try:
                step = job.requeue(now)
            except TransitionRefused:
                raise _not_retryable(job) from None
            message_id = self.scheduler.admit_new(tx, job, now)
            if not tx.jobs.save(job):  # raises the Conflict naming a newer job of the session
                raise Conflict(f"Job {job_id} changed while being retried.", "job_not_failed")
            tx.jobs.add_event(JobEvent(job_id, now, step, "retried", {"from_step": str(step)}))
            tx.commit()
        self._send(job, message_id)
        return job

    def preview(self, principal: Principal, session_id: int, kind: JobKind) -> tuple[Draft, bool]:
        """The draft a post with no markdown would use, and whether it came from the cache."""
        with self.uow() as tx:
            session = owned_session(tx, principal, session_id)
            prepared = self.drafting.prepare(kind, session)
            cached = tx.drafts.get(prepared.key)
        if cached is not None:
            return cached, True
        draft = self.drafting.fresh(prepared)  # no transaction open while the model drafts
        with self.uow() as tx:
            tx.drafts.put(prepared.key, principal.account_id, draft)
            tx.commit()
        return draft, False

    def _send(self, job: WritebackJob, message_id: str | None) -> None:
        if message_id is not None:
            self.scheduler.send(job, message_id)


def _not_retryable(job: WritebackJob) -> Conflict:
    if job.duplicate_of is not None:
        return Conflict(
            f"Job {job.id} was a second close of its session, found at an upgrade; job "
            f"{job.duplicate_of} is the one that counts.",
            "duplicate_close",
            job.duplicate_of,
        )
    return Conflict(
        f"Job {job.id} is {job.state}; only failed jobs can be retried.", "job_not_failed", job.id
    )
