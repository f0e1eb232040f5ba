"""Re-enqueue jobs whose message was lost: nothing is lost between the database and the broker.

A job is due when its `due_at` has passed while it is still in flight: left queued (broker down
at enqueue), retrying past its countdown or parked wait, or running past its lease (worker died).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from writeback.domain.model import JobEvent, JobState, Step
from writeback.domain.ports import Clock, JobQueue, UnitOfWorkFactory
from writeback.domain.retry import RetryPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepReport:
    requeued: int
    failed: int


def sweep(
    *, uow: UnitOfWorkFactory, queue: JobQueue, policy: RetryPolicy, clock: Clock, limit: int = 500
) -> SweepReport:
    requeued = failed = 0
    now = clock()
    with uow() as tx:
        due = [(job.id, job.step, job.redeliveries) for job in tx.jobs.due(now, limit)]
    for job_id, step, redeliveries in due:
        with uow() as tx:
            if redeliveries >= policy.max_redeliveries:
                if tx.jobs.fail_lost(job_id, now, _lost_message(redeliveries)):
                    tx.jobs.add_event(
                        JobEvent(
                            job_id=job_id,
                            at=now,
                            step=step,
                            event="failed",
                            detail={"code": "delivery_lost"},
                        )
                    )
                    failed += 1
                tx.commit()
                continue
            # Conditional: two sweepers (or a worker finishing just now) cannot both win.
            due_again = now + timedelta(seconds=policy.enqueue_grace)
            if not tx.jobs.mark_redelivered(job_id, now, due_again):
                continue
            tx.jobs.add_event(
                JobEvent(
                    job_id=job_id,
                    at=now,
                    step=step,
                    event="requeued",
                    detail={"redelivery": redeliveries + 1},
                )
            )
            tx.commit()
        try:
            queue.enqueue(job_id, Step(step))
            requeued += 1
        except Exception:
            log.exception("re-enqueue of job %s failed; will try again next sweep", job_id)
    if requeued or failed:
        log.info("sweep: %d job(s) re-enqueued, %d failed as lost", requeued, failed)
    return SweepReport(requeued=requeued, failed=failed)


def _lost_message(redeliveries: int) -> str:
    return (
        f"The job's message was lost {redeliveries} times (broker or worker gone); "
        f"it was {JobState.FAILED} to stop looping. Retry it once the cause is fixed."
    )
