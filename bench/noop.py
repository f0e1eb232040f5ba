"""The baseline of figure 1: a bare Celery chain of no-op tasks on the same broker, pool and
concurrency as the pipeline's worker. `celery -A bench.noop worker`."""

from __future__ import annotations

import os

import redis
from celery import Celery

from writeback import celery_config
from writeback.config import load_settings

settings = load_settings()
app = Celery("bench-noop")
app.conf.update(celery_config.build(settings))
app.conf.task_default_queue = os.environ["BENCH_NOOP_QUEUE"]
_counter = redis.Redis.from_url(settings.broker_url)


@app.task(name="bench.noop")
def noop(job_id: str) -> str:
    return job_id


@app.task(name="bench.done")
def done(job_id: str) -> None:
    _counter.incr(os.environ["BENCH_NOOP_COUNTER"])
