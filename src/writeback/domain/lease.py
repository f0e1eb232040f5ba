"""A running step's heartbeat: its lease is renewed while it works, so a short lease finds a
dead worker quickly. Renewals use the database's clock (the lease is a duration the repository
adds to its own now), so a host whose clock is off cannot shorten or lengthen a lease. A lease
renewed too late may still be taken over; the step then learns it at its next write, which the
fence refuses (domain/fencing.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from writeback.domain.ports import Flag, Threads, UnitOfWorkFactory
from writeback.domain.threads import OS_THREADS

log = logging.getLogger(__name__)


@dataclass
class Lease:
    lost: bool = False  # a renewal found the job no longer ours: the next write is refused


class LeaseKeeper:
    def __init__(
        self, *, uow: UnitOfWorkFactory, lease: float, threads: Threads = OS_THREADS
    ) -> None:
        self._uow, self._lease, self._threads = uow, lease, threads

    @contextmanager
    def keep(self, job_id: str, message_id: str) -> Iterator[Lease]:
        lease, stop = Lease(), self._threads.flag()
        join = self._threads.start(lambda: self._renew_until(stop, lease, job_id, message_id))
        try:
            yield lease
        finally:
            stop.set()
            join()

    def _renew_until(self, stop: Flag, lease: Lease, job_id: str, message_id: str) -> None:
        while not stop.wait(self._lease / 3):
            try:
                with self._uow() as tx:
                    renewed = tx.jobs.heartbeat(job_id, message_id, self._lease)
                    tx.commit()
            except Exception:  # the database may be back before the lease runs out
                log.warning("lease of job %s not renewed", job_id, exc_info=True)
                continue
            if not renewed:
                lease.lost = True
                log.warning("job %s: lease lost; its next write is refused", job_id)
                return
