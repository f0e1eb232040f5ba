"""Celery task shells: a job id in, one service call, retry and failure mapped to Celery.

Task names are explicit and stable (`writeback.post_note`, ...): Flower shows them and the queue
adapter addresses them by name. Arguments are the job id only: no credential or markdown ever
reaches the broker or Flower.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task, current_app, shared_task

from writeback import bootstrap
from writeback.celery_config import SWEEP_TASK
from writeback.domain.model import PIPELINE, Step, utcnow
from writeback.domain.pipeline import Action
from writeback.domain.sweeper import sweep

log = logging.getLogger(__name__)

# The job row counts attempts and bounds retries, so Celery's own counter is not the limit.
STEP_TASK_OPTIONS: dict[str, Any] = {"bind": True, "max_retries": None, "acks_late": True}


class StepFailed(Exception):
    """The job ended failed. One message string, so it survives Celery's serializer."""


def _container() -> bootstrap.Container:
    return bootstrap.for_this_process(current_app._get_current_object())


def _run(task: Task, job_id: str, step: Step) -> str:
    container = _container()
    started = time.perf_counter()
    result = container.pipeline().run_step(job_id, step, task.request.id)
    metrics = container.metrics
    metrics.step_seconds.labels(str(step), str(result.action)).observe(
        time.perf_counter() - started
    )
    if result.action in (Action.FINISHED, Action.FAILED):
        state = "succeeded" if result.action is Action.FINISHED else "failed"
        metrics.jobs_finished.labels(state).inc()
    if result.action is Action.RETRY:
        raise task.retry(countdown=result.countdown)
    if result.action is Action.FAILED:
        # Raising marks the task FAILURE (what ops see in Flower) and stops the chain.
        raise StepFailed(result.message)
    return job_id  # later links are immutable signatures; they re-check the job row anyway


def _step_task(step: Step) -> Task:
    @shared_task(name=f"writeback.{step}", **STEP_TASK_OPTIONS)
    def run_step(self: Task, job_id: str) -> str:
        return _run(self, job_id, step)

    return run_step  # type: ignore[no-any-return]


STEP_TASKS = {step: _step_task(step) for step in PIPELINE}


@shared_task(name=SWEEP_TASK)
def sweep_lost_jobs() -> dict[str, int]:
    container = _container()
    report = sweep(
        uow=container.uow,
        queue=container.queue,
        policy=container.settings.retry,
        clock=utcnow,
    )
    return {"requeued": report.requeued, "failed": report.failed}
