"""A running step's heartbeat: its lease is renewed while it works, so a short lease finds a
dead worker quickly and can never be taken from a live one."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from writeback.domain.ports import Clock, UnitOfWorkFactory

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self, *, uow: UnitOfWorkFactory, clock: Clock, lease: float) -> None:
        self._uow, self._clock, self._lease = uow, clock, lease

    @contextmanager
    def keep(self, job_id: str, message_id: str) -> Iterator[None]:
        stop = threading.Event()
        beat = threading.Thread(
            target=self._renew_until, args=(stop, job_id, message_id), daemon=True
        )
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join()

    def _renew_until(self, stop: threading.Event, job_id: str, message_id: str) -> None:
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
