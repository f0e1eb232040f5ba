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

from writeback.domain.errors import Conflict, JobInFlight, NotFound
from writeback.domain.jobs import JobService
from writeback.domain.model import JobCursor, JobFilter, JobState, WritebackJob
from writeback.domain.ports import UnitOfWorkFactory

log = logging.getLogger(__name__)


class Result(enum.StrEnum):
    REPOSTED = "reposted"
    DONE = "skipped_done"  # succeeded, or closed by another job meanwhile
    IN_FLIGHT = "skipped_in_flight"  # moving: the scheduler admits it when its tenant has room
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


def repost_one(job: WritebackJob, *, jobs: JobService) -> Result:
    """Retry a failed job from where it stopped. It joins its tenant's queue in the database,
    so a batch of any size goes out at the tenant's pace and never crowds out other tenants."""
    if job.in_flight:
        return Result.IN_FLIGHT
    if job.state is not JobState.FAILED:
        return Result.DONE
    try:
        jobs.retry(job.id, account_id=None)
    except JobInFlight:
        return Result.IN_FLIGHT
    except (NotFound, Conflict):
        return Result.DONE
    except Exception:
        log.exception("re-post of job %s failed", job.id)
        return Result.ERROR
    return Result.REPOSTED
