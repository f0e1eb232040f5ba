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
from writeback.domain.ports import Clock, JobQueue, UnitOfWork, UnitOfWorkFactory
from writeback.domain.retry import RetryPolicy
from writeback.domain.scheduler import send
from writeback.domain.sessions import owned_session

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobService:
    uow: UnitOfWorkFactory
    reads: UnitOfWorkFactory  # reads that need no transaction (polling)
    queue: JobQueue
    drafting: Drafting
    policy: RetryPolicy
    clock: Clock

    def request_writeback(
        self, principal: Principal, session_id: int, kind: JobKind, markdown: str | None
    ) -> WritebackJob:
        """Create the job and commit, then send its first message. The database decides every
        race: partial unique indexes allow one job in flight per session and one job that
        closes the session per kind, so a double submit can never post a second note."""
        now = self.clock()
        with self.uow() as tx:
            session = owned_session(tx, principal, session_id)
            if markdown is not None:
                self.drafting.check_technician(kind, session, markdown)
            job = WritebackJob(
                account_id=principal.account_id,
                session_id=session_id,
                kind=kind,
                tenant=tenant_of(session),
                markdown=markdown,
                created_at=now,
                updated_at=now,
                due_at=now,
            )
            message_id = self._admit_if_free(tx, job)
            tx.jobs.add(job)  # raises the Conflict naming the job in the way
            tx.jobs.add_event(JobEvent(job.id, now, Step.DRAFT, "created"))
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
        now = self.clock()
        with self.uow() as tx:
            job = tx.jobs.get(job_id, account_id)
            if job is None:
                raise NotFound(f"Job {job_id} not found.")
            try:
                step = job.requeue(now)
            except TransitionRefused:
                raise Conflict(
                    f"Job {job_id} is {job.state}; only failed jobs can be retried.",
                    "job_not_failed",
                    job_id,
                ) from None
            message_id = self._admit_if_free(tx, job)
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

    # Helpers

    def _admit_if_free(self, tx: UnitOfWork, job: WritebackJob) -> str | None:
        """Straight to the broker when the tenant has a free slot; else held for the scheduler."""
        if tx.jobs.occupied_slots(job.tenant) >= self.policy.tenant_slots:
            return None
        message_id = self.queue.new_message_id()
        job.admit(message_id, self.clock())
        return message_id

    def _send(self, job: WritebackJob, message_id: str | None) -> None:
        if message_id is not None:
            send(job, message_id, uow=self.uow, queue=self.queue, clock=self.clock)
