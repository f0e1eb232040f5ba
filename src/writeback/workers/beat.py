"""Beat's sweep, run in beat's own process on its own schedule: never a message in the step
queue, so no backlog of steps can delay it or make it expire (`celery -A
writeback.workers.celery_app beat`; celery_config sets this scheduler)."""

from __future__ import annotations

import logging
from typing import Any

from celery.beat import PersistentScheduler

from writeback import bootstrap
from writeback.celery_config import SWEEP_TASK
from writeback.domain.errors import Wait

log = logging.getLogger(__name__)


class SweepingScheduler(PersistentScheduler):  # type: ignore[misc]
    """Celery's scheduler, except that the sweep entry runs here instead of being sent."""

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        if entry.task != SWEEP_TASK:
            super().apply_entry(entry, producer)
            return
        try:
            bootstrap.for_this_process(self.app).scheduler.tick()
        except Wait as exc:  # the database is away: the next sweep tries again
            log.warning("sweep skipped: %s", exc.message)
        except Exception:  # one bad sweep must not stop beat
            log.exception("sweep failed")
