"""Re-enqueue jobs whose message was lost: nothing is lost between the database and the broker.

A job is due when its `due_at` has passed while it is still in flight: left queued (broker down
at enqueue), retrying past its countdown or parked wait, or running past its lease (worker died).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import timedelta

from writeback.domain.model import JobEvent, JobState, Step, WritebackJob
from writeback.domain.ports import Clock, JobQueue, UnitOfWorkFactory
from writeback.domain.retry import RetryPolicy

log = logging.getLogger(__name__)


class Requeue(enum.StrEnum):
    REQUEUED = "requeued"
    FAILED = "failed"  # lost too often: failed instead of looping
    MOVED_ON = "moved_on"  # a worker or another sweeper got there first


@dataclass(frozen=True)
class SweepReport:
    requeued: int
    failed: int


def requeue_lost(
    job: WritebackJob,
    *,
    uow: UnitOfWorkFactory,
    queue: JobQueue,
    policy: RetryPolicy,
    clock: Clock,
) -> Requeue:
    """Release one due in-flight job for another delivery and enqueue it from its step."""
    now = clock()
    with uow() as tx:
        if job.redeliveries >= policy.max_redeliveries:
            if not tx.jobs.fail_lost(job.id, now, _lost_message(job.redeliveries)):
                return Requeue.MOVED_ON
            tx.jobs.add_event(
                JobEvent(
                    job_id=job.id,
                    at=now,
                    step=job.step,
                    event="failed",
                    detail={"code": "delivery_lost"},
                )
            )
            tx.commit()
            return Requeue.FAILED
        # Conditional: two sweepers (or a worker finishing just now) cannot both win.
        due_again = now + timedelta(seconds=policy.enqueue_grace)
        if not tx.jobs.mark_redelivered(job.id, now, due_again):
            return Requeue.MOVED_ON
        tx.jobs.add_event(
            JobEvent(
                job_id=job.id,
                at=now,
                step=job.step,
                event="requeued",
                detail={"redelivery": job.redeliveries + 1},
            )
        )
        tx.commit()
    # Enqueued after the commit; if the broker is down now, the job is due again later.
    queue.enqueue(job.id, Step(job.step))
    return Requeue.REQUEUED


def sweep(
    *, uow: UnitOfWorkFactory, queue: JobQueue, policy: RetryPolicy, clock: Clock, limit: int = 500
) -> SweepReport:
    with uow() as tx:
        due = list(tx.jobs.due(clock(), limit))
    results = []
    for job in due:
        try:
            results.append(requeue_lost(job, uow=uow, queue=queue, policy=policy, clock=clock))
        except Exception:
            log.exception("re-enqueue of job %s failed; will try again next sweep", job.id)
    report = SweepReport(
        requeued=results.count(Requeue.REQUEUED), failed=results.count(Requeue.FAILED)
    )
    if report.requeued or report.failed:
        log.info("sweep: %d job(s) re-enqueued, %d failed as lost", report.requeued, report.failed)
    return report


def _lost_message(redeliveries: int) -> str:
    return (
        f"The job's message was lost {redeliveries} times (broker or worker gone); "
        f"it was {JobState.FAILED} to stop looping. Retry it once the cause is fixed."
    )
