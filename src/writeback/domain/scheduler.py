"""Admission, sending and recovery: which jobs are in the broker, and what happens when a
delivery is provably lost.

Each tenant (a PSA connection, or an account's local jobs) has `tenant_slots` jobs at most in
the broker or running; its other jobs wait in the database and are admitted, oldest due first,
as slots free up (the moment a step of the tenant ends, and on every sweep). So a broker queue
holds a few messages per tenant, never one tenant's whole backlog, and another tenant's job
waits seconds behind it, not minutes. Waits (retries, request budget, our own outages) are held
the same way, so no message ever sits in the broker with a delay.

A message is sent after the commit that names it, and marked sent once the broker has it. The
sweep (run by beat itself, so no backlog of steps can delay it) then:
- sends again, under the same id, a message committed and not known to be sent for
  `send_grace` seconds (its sender died between commit and send); a second copy is harmless,
  the claim skips it;
- recovers a job whose delivery is provably lost: the running step's lease ran out by the
  database's clock (the worker died or froze), or the broker lost its data since the message
  was sent (its epoch changed). A message still in a queue is never taken for lost. As a last
  net, a message sent and not picked up for `pickup_timeout` is sent again, not counted.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from writeback.domain.model import JobEvent, TransitionRefused, WritebackJob
from writeback.domain.ports import JobQueue, UnitOfWork, UnitOfWorkFactory
from writeback.domain.retry import RetryPolicy

log = logging.getLogger(__name__)


class Lost(enum.StrEnum):
    WORKER = "worker_lost"  # the running step's lease ran out
    BROKER = "broker_lost"  # the broker lost its data since the message was sent
    NOT_PICKED_UP = "not_picked_up"  # unproven: sent again, never counted as a loss


class Recovery(enum.StrEnum):
    SENT = "sent"  # the same step goes to the broker again
    SETTLING = "settling"  # held for the settle time: a note POST may still be landing
    FAILED = "failed"  # lost too often: failed with delivery_lost


@dataclass(frozen=True)
class Recovered:
    job: WritebackJob
    outcome: Recovery
    message_id: str | None  # what to send, for SENT


@dataclass(frozen=True)
class SweepReport:
    admitted: int = 0
    recovered: int = 0
    resent: int = 0
    failed: int = 0

    @property
    def idle(self) -> bool:
        return not (self.admitted or self.recovered or self.resent or self.failed)


class Scheduler:
    def __init__(self, *, uow: UnitOfWorkFactory, queue: JobQueue, policy: RetryPolicy) -> None:
        self._uow, self._queue, self._policy = uow, queue, policy

    # Sending

    def send(self, job: WritebackJob, message_id: str) -> None:
        """Send the job's message after the commit that names it, and mark it sent; if the
        broker refuses, hold the job for the sweep rather than leave a message that does not
        exist outstanding."""
        try:
            self._queue.enqueue(job.id, job.step, message_id)
        except Exception:
            log.warning("enqueue of job %s failed; held for the sweep", job.id, exc_info=True)
            self._release(job.id, message_id)
            return
        try:
            with self._uow() as tx:
                tx.jobs.sent(job.id, message_id)
                tx.commit()
        except Exception:  # unmarked, the sweep sends a second copy: harmless
            log.warning("job %s: message %s sent but not marked", job.id, message_id)

    def _release(self, job_id: str, message_id: str) -> None:
        with self._uow() as tx:
            current = tx.jobs.get(job_id)
            if current is None:
                return
            try:
                current.release(message_id, tx.now())
            except TransitionRefused:
                return  # a worker picked it up after all
            if tx.jobs.save(current):
                tx.commit()

    # Admission

    def admit_new(self, tx: UnitOfWork, job: WritebackJob, now: datetime) -> str | None:
        """In the transaction that makes `job` ready (a post, a retry), as its last change:
        straight to the broker when its tenant has a free slot (the message id to send once
        committed), else None: held for the sweep."""
        occupied = tx.jobs.occupied_slots(job.tenant)
        if occupied is None or occupied >= self._policy.tenant_slots:
            return None
        message_id = self._queue.new_message_id()
        job.admit(message_id, now)
        return message_id

    def admit(self, tenant: str) -> int:
        """Fill the tenant's free slots with its held jobs that are due."""
        sent = []
        with self._uow() as tx:
            now = tx.now()
            occupied = tx.jobs.occupied_slots(tenant)
            free = 0 if occupied is None else self._policy.tenant_slots - occupied
            for job in tx.jobs.held_due(tenant, now, free) if free > 0 else []:
                message_id = self._queue.new_message_id()
                job.admit(message_id, now)
                if tx.jobs.save(job):
                    sent.append((job, message_id))
            tx.commit()
        for job, message_id in sent:
            self.send(job, message_id)
        return len(sent)

    def step_ended(self, tenant: str) -> None:
        """A step of `tenant` finished, failed or started waiting: its slot is free."""
        self.admit(tenant)

    # The sweep

    def tick(self) -> SweepReport:
        """One sweep: recover lost deliveries, send unsent messages again, admit what fits."""
        recovered = self.recover()
        resent = self.resend_unsent()
        with self._uow() as tx:
            now = tx.now()
            waiting = tx.jobs.tenants_waiting(now)
            tx.jobs.record_sweep(now)
            tx.commit()
        slots = self._policy.tenant_slots
        admitted = sum(self.admit(t) for t, occupied in waiting.items() if occupied < slots)
        failed = sum(r.outcome is Recovery.FAILED for r in recovered)
        report = SweepReport(admitted, len(recovered) - failed, resent, failed)
        if report.idle:
            log.debug("sweep: nothing to do")
        else:
            log.info("sweep: %s", report)
        return report

    def resend_unsent(self, limit: int = 500) -> int:
        with self._uow() as tx:
            now = tx.now()
            unsent = tx.jobs.unsent(now - timedelta(seconds=self._policy.send_grace), limit)
        for job in unsent:
            assert job.message_id is not None
            log.warning(
                "job %s: message %s not known to be sent; sending it", job.id, job.message_id
            )
            self.send(job, job.message_id)
        return len(unsent)

    def recover(self, limit: int = 500) -> Sequence[Recovered]:
        done = []
        with self._uow() as tx:
            now = tx.now()
            lost = [(job, Lost.WORKER) for job in tx.jobs.lease_expired(now, limit)]
            pickup = now - timedelta(seconds=self._policy.pickup_timeout)
            for job in tx.jobs.outstanding(limit):
                assert job.message_id is not None
                if self._queue.lost(job.message_id):
                    lost.append((job, Lost.BROKER))
                elif job.sent_at is not None and job.sent_at < pickup:
                    lost.append((job, Lost.NOT_PICKED_UP))
            for job, why in lost:
                recovered = self._recover(job, why, now)
                if recovered is None:
                    continue
                # A running step is taken over only while its lease is still out, judged when
                # this is written: a heartbeat since the read keeps it with its worker.
                if tx.jobs.save(job, lease_expired=why is Lost.WORKER):
                    tx.jobs.add_event(_event(recovered, why, now))
                    done.append(recovered)
            tx.commit()
        for recovered in done:
            if recovered.message_id is not None:
                self.send(recovered.job, recovered.message_id)
        return done

    def _recover(self, job: WritebackJob, why: Lost, now: datetime) -> Recovered | None:
        counted = why is not Lost.NOT_PICKED_UP
        try:
            if counted and job.redeliveries >= self._policy.max_redeliveries:
                job.fail("delivery_lost", _lost_message(job.redeliveries + 1, why), now)
                return Recovered(job, Recovery.FAILED, None)
            message_id = self._queue.new_message_id()
            if job.recover(message_id, now, counted=counted, policy=self._policy):
                return Recovered(job, Recovery.SENT, message_id)
            return Recovered(job, Recovery.SETTLING, None)
        except TransitionRefused:
            return None


def _event(recovered: Recovered, why: Lost, now: datetime) -> JobEvent:
    job = recovered.job
    if recovered.outcome is Recovery.FAILED:
        return JobEvent(job.id, now, job.step, "failed", {"code": "delivery_lost"})
    detail = {"reason": str(why), "redelivery": job.redeliveries, "then": str(recovered.outcome)}
    return JobEvent(job.id, now, job.step, "requeued", detail)


def _lost_message(times: int, why: Lost) -> str:
    what = "the worker running it stopped" if why is Lost.WORKER else "the broker lost it"
    return (
        f"The job's delivery was lost {times} times ({what}); it was failed to stop looping. "
        "Retry it once the cause is fixed."
    )
