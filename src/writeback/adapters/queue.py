"""The Celery-backed job queue and the Celery app factory shared by producers and workers."""

from __future__ import annotations

from celery import Celery, chain

from writeback import celery_config
from writeback.config import Settings
from writeback.domain.model import Step, steps_from

TASK_PREFIX = "writeback."


def task_name(step: Step) -> str:
    return f"{TASK_PREFIX}{step}"


def create_celery_app(settings: Settings, *, include: tuple[str, ...] = ()) -> Celery:
    app = Celery("writeback", include=list(include))
    app.conf.update(celery_config.build(settings))
    return app


class CeleryJobQueue:
    """Enqueues the rest of a job's pipeline as one chain; every message carries only the job id."""

    def __init__(self, app: Celery) -> None:
        self._app = app

    def enqueue(self, job_id: str, from_step: Step) -> None:
        links = [
            self._app.signature(task_name(step), args=(job_id,), immutable=True)
            for step in steps_from(from_step)
        ]
        if links:
            chain(*links).apply_async()
