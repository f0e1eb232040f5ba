"""Fenced writes. A lease is not a lock: a step paused past its lease (a frozen VM, a GC or swap
stall, a heartbeat that could not reach the database) wakes up believing it still owns its job,
while the sweeper has handed the job to another worker. Our PSAs take no fencing token, so the
fence is on our side: right before each write the step re-confirms with the database that it
still owns the job, by a save that only lands while the lease has not run out by the database's
clock, and that extends the lease over the write's whole timeout. The step then checks its own
monotonic clock: a pause during the confirmation itself voids it.

What is left: a pause that lands after that check and before the request's bytes leave, and
lasts longer than the lease left (the write's timeout and two margins) plus the settle time the
new owner waits before it looks for the note. README "Safe under partial failure" says it in
words.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from writeback.domain.errors import LeaseLost
from writeback.domain.lease import Lease
from writeback.domain.model import WritebackJob
from writeback.domain.ports import Monotonic, UnitOfWorkFactory
from writeback.domain.retry import RetryPolicy


@dataclass(frozen=True)
class Fence:
    uow: UnitOfWorkFactory  # single statements: the claims' autocommit connection
    policy: RetryPolicy
    monotonic: Monotonic

    def guard(
        self,
        job: WritebackJob,
        owner: str,
        lease: Lease,
        now: Callable[[], datetime],
        *,
        posting: bool,
    ) -> Callable[[], None]:
        """What the PSA client calls right before it sends a write; raises LeaseLost (nothing
        is sent) unless the step still owns `job`. `posting`: the write may create the note."""

        def before_write() -> None:
            if lease.lost:
                raise LeaseLost(
                    f"The lease of job {job.id} was taken over; the write was not sent."
                )
            started = self.monotonic()
            confirmed = replace(job)
            confirmed.confirm_write(owner, self.policy.write_hold, posting, now())
            with self.uow() as tx:
                saved = tx.jobs.save(confirmed, lease_alive=True)
                tx.commit()
            if not saved:
                raise LeaseLost(
                    f"Job {job.id} is no longer this step's, or its lease ran out; the write was "
                    "not sent."
                )
            job.__dict__.update(confirmed.__dict__)  # the job as saved, for the step's record
            paused = self.monotonic() - started
            if paused > self.policy.write_margin:
                raise LeaseLost(
                    f"The step paused {paused:.1f} s while confirming its lease; the write was "
                    "not sent."
                )

        return before_write
