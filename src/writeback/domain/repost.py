"""Bulk re-post of stuck jobs (the `writeback repost-stuck` command).

Jobs are streamed page by page with a keyset cursor, so memory stays flat however many match.
Each job is re-posted through the same guarded paths as a single retry or a sweep, so running
twice, or alongside busy workers, never double-posts a note or makes two in-flight jobs for one
session.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from writeback.domain.errors import AlreadyClosed, Conflict, JobInFlight, NotFound
from writeback.domain.model import IN_FLIGHT_STATES, JobCursor, JobFilter, JobState, WritebackJob
from writeback.domain.ports import Clock, JobQueue, UnitOfWorkFactory
from writeback.domain.retry import RetryPolicy
from writeback.domain.services import retry_job
from writeback.domain.sweeper import Requeue, requeue_lost

log = logging.getLogger(__name__)


class Result(enum.StrEnum):
    REPOSTED = "reposted"
    DONE = "skipped_done"  # succeeded or closed meanwhile
    IN_FLIGHT = "skipped_in_flight"  # a job for the session is running, or this one is not due
    FAILED_AS_LOST = "failed_as_lost"
    ERROR = "error"


@dataclass
class RepostReport:
    counts: dict[Result, int] = field(default_factory=lambda: {r: 0 for r in Result})

    def add(self, result: Result) -> None:
        self.counts[result] += 1


def stream_jobs(
    where: JobFilter, *, uow: UnitOfWorkFactory, page_size: int = 500
) -> Iterator[WritebackJob]:
    after: JobCursor | None = None
    while True:
        with uow() as tx:
            page = list(tx.jobs.find(where, after, page_size))
        yield from page
        if len(page) < page_size:
            return
        after = JobCursor(created_at=page[-1].created_at, id=page[-1].id)


def repost_one(
    job: WritebackJob,
    *,
    uow: UnitOfWorkFactory,
    queue: JobQueue,
    policy: RetryPolicy,
    clock: Clock,
) -> Result:
    try:
        if job.state == JobState.FAILED:
            retry_job(
                job.id,
                account_id=None,
                uow=uow,
                queue=queue,
                clock=clock,
                enqueue_grace=policy.enqueue_grace,
            )
            return Result.REPOSTED
        if job.state in IN_FLIGHT_STATES and job.due_at is not None and job.due_at <= clock():
            outcome = requeue_lost(job, uow=uow, queue=queue, policy=policy, clock=clock)
            return {
                Requeue.REQUEUED: Result.REPOSTED,
                Requeue.FAILED: Result.FAILED_AS_LOST,
                Requeue.MOVED_ON: Result.IN_FLIGHT,
            }[outcome]
        return Result.IN_FLIGHT if job.state in IN_FLIGHT_STATES else Result.DONE
    except JobInFlight:
        return Result.IN_FLIGHT
    except (AlreadyClosed, NotFound, Conflict):
        return Result.DONE
    except Exception:
        log.exception("re-post of job %s failed", job.id)
        return Result.ERROR
