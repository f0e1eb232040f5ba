"""Admission and recovery: which jobs are in the broker, and what happens when a delivery is
provably lost.

Each tenant (a PSA connection, or an account's local jobs) has `tenant_slots` jobs at most in
the broker or running; its other jobs wait in the database and are admitted, oldest due first,
as slots free up. So a broker queue holds a few messages per tenant, never one tenant's whole
backlog, and another tenant's job waits seconds behind it, not minutes. Waits (retries,
request budget) are held the same way, so no message ever sits in the broker with a delay.

A job is recovered (its step sent again under a new message id) only when its delivery is
provably lost: the running step's heartbeat stopped (the worker died), or the broker lost the
message (it lost its data since). A message waiting in a queue is never taken for lost.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from writeback.domain.model import JobEvent, TransitionRefused, WritebackJob
from writeback.domain.ports import Clock, JobQueue, UnitOfWorkFactory
from writeback.domain.retry import RetryPolicy

log = logging.getLogger(__name__)


def send(
    job: WritebackJob, message_id: str, *, uow: UnitOfWorkFactory, queue: JobQueue, clock: Clock
) -> None:
    """Send the job's message after its commit; if the broker refuses, hold the job for the
    scheduler rather than leave a message that never existed outstanding."""
    try:
        queue.enqueue(job.id, job.step, message_id)
    except Exception:
        log.exception("enqueue of job %s failed; held for the scheduler", job.id)
        with uow() as tx:
            current = tx.jobs.get(job.id)
            if current is None:
                return
            try:
                current.release(message_id, clock())
            except TransitionRefused:
                return  # a worker picked it up after all
            if tx.jobs.save(current):
                tx.commit()


class Lost(enum.StrEnum):
    WORKER = "worker_lost"  # the running step's heartbeat stopped
    BROKER = "broker_lost"  # the broker lost its data since the message was sent
    NOT_PICKED_UP = "not_picked_up"  # unproven: sent again, never counted as a loss


@dataclass(frozen=True)
class SweepReport:
    admitted: int = 0
    recovered: int = 0
    failed: int = 0


class Scheduler:
    def __init__(
        self, *, uow: UnitOfWorkFactory, queue: JobQueue, policy: RetryPolicy, clock: Clock
    ) -> None:
        self._uow, self._queue, self._policy, self._clock = uow, queue, policy, clock

    def _send(self, job: WritebackJob, message_id: str) -> None:
        send(job, message_id, uow=self._uow, queue=self._queue, clock=self._clock)

    def admit(self, tenant: str) -> int:
        """Fill the tenant's free slots with its held jobs that are due."""
        now, sent = self._clock(), []
        with self._uow() as tx:
            free = self._policy.tenant_slots - tx.jobs.occupied_slots(tenant)
            for job in tx.jobs.held_due(tenant, now, free) if free > 0 else []:
                message_id = self._queue.new_message_id()
                job.admit(message_id, now)
                if tx.jobs.save(job):
                    sent.append((job, message_id))
            tx.commit()
        for job, message_id in sent:
            self._send(job, message_id)
        return len(sent)

    def tick(self) -> SweepReport:
        """One beat: recover lost deliveries, then admit what fits."""
        recovered, failed = self.recover()
        with self._uow() as tx:
            waiting = tx.jobs.tenants_waiting(self._clock())
        slots = self._policy.tenant_slots
        admitted = sum(self.admit(t) for t, occupied in waiting.items() if occupied < slots)
        report = SweepReport(admitted=admitted, recovered=recovered, failed=failed)
        if recovered or failed:
            log.info("sweep: %s", report)
        return report

    def recover(self, limit: int = 500) -> tuple[int, int]:
        now = self._clock()
        with self._uow() as tx:
            lost = [(job, Lost.WORKER) for job in tx.jobs.lease_expired(now, limit)]
            for job in tx.jobs.outstanding(now, limit):
                assert job.message_id is not None
                if self._queue.lost(job.message_id):
                    lost.append((job, Lost.BROKER))
                elif job.updated_at < now - timedelta(seconds=self._policy.pickup_timeout):
                    lost.append((job, Lost.NOT_PICKED_UP))
            sent, failed = [], 0
            for job, why in lost:
                outcome = self._recover(job, why, now)
                if outcome is None:
                    continue
                tx.jobs.add_event(outcome[1])
                if tx.jobs.save(job):
                    failed += outcome[0] is None
                    if outcome[0] is not None:
                        sent.append((job, outcome[0]))
            tx.commit()
        for job, message_id in sent:
            self._send(job, message_id)
        return len(sent), failed

    def _recover(
        self, job: WritebackJob, why: Lost, now: datetime
    ) -> tuple[str | None, JobEvent] | None:
        """The job's new message id (None: failed as lost) and the audit event."""
        counted = why is not Lost.NOT_PICKED_UP
        try:
            if counted and job.redeliveries >= self._policy.max_redeliveries:
                job.fail(None, "delivery_lost", _lost_message(job.redeliveries + 1, why), now)
                return None, JobEvent(job.id, now, job.step, "failed", {"code": "delivery_lost"})
            message_id = self._queue.new_message_id()
            job.recover(message_id, now, counted=counted)
        except TransitionRefused:
            return None
        detail = {"reason": str(why), "redelivery": job.redeliveries}
        return message_id, JobEvent(job.id, now, job.step, "requeued", detail)


def _lost_message(times: int, why: Lost) -> str:
    what = "the worker running it stopped" if why is Lost.WORKER else "the broker lost it"
    return (
        f"The job's delivery was lost {times} times ({what}); it was failed to stop looping. "
        "Retry it once the cause is fixed."
    )
