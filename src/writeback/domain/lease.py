"""A running step's heartbeat: its lease is renewed while it works, so a short lease finds a
dead worker quickly and can never be taken from a live one."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from writeback.domain.ports import Clock, Flag, Threads, UnitOfWorkFactory
from writeback.domain.threads import OS_THREADS

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(
        self, *, uow: UnitOfWorkFactory, clock: Clock, lease: float, threads: Threads = OS_THREADS
    ) -> None:
        self._uow, self._clock, self._lease, self._threads = uow, clock, lease, threads

    @contextmanager
    def keep(self, job_id: str, message_id: str) -> Iterator[None]:
        stop = self._threads.flag()
        join = self._threads.start(lambda: self._renew_until(stop, job_id, message_id))
        try:
            yield
        finally:
            stop.set()
            join()

    def _renew_until(self, stop: Flag, job_id: str, message_id: str) -> None:
        while not stop.wait(self._lease / 3):
            try:
                with self._uow() as tx:
                    renewed = tx.jobs.heartbeat(
                        job_id, message_id, self._clock() + timedelta(seconds=self._lease)
                    )
                    tx.commit()
            except Exception:  # the database may be back before the lease runs out
                log.warning("lease of job %s not renewed", job_id, exc_info=True)
                continue
            if not renewed:
                log.warning("job %s: lease lost; its result will be dropped", job_id)
                return
