"""Celery task shells: a job id in, one pipeline call, the outcome mapped to Celery.

Each step is declared with its literal name, so `grep writeback.post_note` finds it; the one
definition of how a step runs is `_run`. Arguments are the job id only: no credential or
markdown ever reaches the broker or Flower.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task, current_app, shared_task

from writeback import bootstrap
from writeback.domain.errors import StoreUnavailable
from writeback.domain.model import Step
from writeback.domain.pipeline import Action

log = logging.getLogger(__name__)

# The job row counts attempts and schedules waits; Celery only retries while the database is
# unreachable, keeping the message (and its id) until it can be claimed.
STEP_TASK_OPTIONS: dict[str, Any] = {"bind": True, "max_retries": None}
DATABASE_RETRY_SECONDS = 5


class StepFailed(Exception):
    """The job ended failed. One message string, so it survives Celery's serializer."""


def _container() -> bootstrap.Container:
    return bootstrap.for_this_process(current_app._get_current_object())


def _run(task: Task, job_id: str, step: Step) -> str:
    container = _container()
    started = time.perf_counter()
    try:
        result = container.pipeline.run_step(job_id, step, task.request.id)
    except StoreUnavailable as exc:  # the database is down: keep the message for later
        log.warning("step %s of job %s: database unavailable; retrying the message", step, job_id)
        raise task.retry(countdown=DATABASE_RETRY_SECONDS, exc=exc) from None
    metrics = container.metrics
    metrics.step_seconds.labels(str(step), str(result.action)).observe(
        time.perf_counter() - started
    )
    if result.action in (Action.FINISHED, Action.FAILED):
        state = "succeeded" if result.action is Action.FINISHED else "failed"
        metrics.jobs_finished.labels(state).inc()
    if result.action is Action.FAILED:
        # Raising marks the task FAILURE (what ops see in Flower).
        raise StepFailed(result.message)
    return str(result.action)


@shared_task(name="writeback.draft", **STEP_TASK_OPTIONS)
def draft(self: Task, job_id: str) -> str:
    return _run(self, job_id, Step.DRAFT)


@shared_task(name="writeback.post_note", **STEP_TASK_OPTIONS)
def post_note(self: Task, job_id: str) -> str:
    return _run(self, job_id, Step.POST_NOTE)


@shared_task(name="writeback.transition_status", **STEP_TASK_OPTIONS)
def transition_status(self: Task, job_id: str) -> str:
    return _run(self, job_id, Step.TRANSITION_STATUS)


@shared_task(name="writeback.verify", **STEP_TASK_OPTIONS)
def verify(self: Task, job_id: str) -> str:
    return _run(self, job_id, Step.VERIFY)


@shared_task(name="writeback.finalize", **STEP_TASK_OPTIONS)
def finalize(self: Task, job_id: str) -> str:
    return _run(self, job_id, Step.FINALIZE)


@shared_task(name="writeback.sweep")
def sweep() -> None:
    """Kept for one release: a beat of the previous release sends the sweep as a task. This
    release's beat runs it itself (workers/beat.py)."""
    _container().scheduler.tick()
