"""The Celery-backed job queue and the Celery app factory shared by producers and workers."""

from __future__ import annotations

import threading
import uuid

import redis
from cachetools import TTLCache
from celery import Celery

from writeback import celery_config
from writeback.config import Settings
from writeback.domain.model import Step

TASK_PREFIX = "writeback."
EPOCH_KEY = "writeback:broker-epoch"
UNKNOWN_EPOCH = "unknown"


def task_name(step: Step) -> str:
    return f"{TASK_PREFIX}{step}"


def create_celery_app(settings: Settings, *, include: tuple[str, ...] = ()) -> Celery:
    app = Celery("writeback", include=list(include))
    app.conf.update(celery_config.build(settings))
    return app


class BrokerEpoch:
    """Which life of a Redis broker we are in. Redis here keeps nothing on disk: a restart
    loses every queued message, and the random epoch key with them. A message id carries the
    epoch it was sent in, so a message sent in an earlier epoch is provably gone."""

    def __init__(self, client: redis.Redis, ttl: float = 1.0) -> None:
        self._client = client
        # Read once a second per process, not once a message. A message sent in the second
        # after a restart may carry the old epoch: the scheduler then sends it again and the
        # copy that arrives second is skipped at its claim.
        self._cache: TTLCache[str, str] = TTLCache(maxsize=1, ttl=ttl)
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe on their own

    def current(self) -> str:
        with self._lock:
            epoch = self._cache.get(EPOCH_KEY)
        if epoch is None:
            epoch = self._read()
            with self._lock:
                self._cache[EPOCH_KEY] = epoch
        return epoch

    def _read(self) -> str:
        value = self._client.get(EPOCH_KEY)
        if value is None:  # a new broker: the first to ask starts its epoch
            self._client.set(EPOCH_KEY, uuid.uuid4().hex[:12], nx=True)
            value = self._client.get(EPOCH_KEY)
        return value.decode() if isinstance(value, bytes) else str(value)


class CeleryJobQueue:
    """One message per job step, sent by task name with the job id as its only argument, under
    the message id the job row records (the Celery task id)."""

    DURABLE = "durable"  # brokers that keep their messages across restarts

    def __init__(self, app: Celery, epoch: BrokerEpoch | None = None) -> None:
        self._app, self._epoch = app, epoch

    def _current(self) -> str:
        return self._epoch.current() if self._epoch else self.DURABLE

    def new_message_id(self) -> str:
        """Never fails: with the broker unreachable the id carries no epoch, its send fails and
        the job is held; should the send go through after all, the scheduler finds the id of
        no epoch and sends the step again (the stale copy is skipped at its claim)."""
        try:
            epoch = self._current()
        except redis.RedisError:
            epoch = UNKNOWN_EPOCH
        return f"{epoch}.{uuid.uuid4()}"

    def enqueue(self, job_id: str, step: Step, message_id: str) -> None:
        self._app.send_task(task_name(step), args=(job_id,), task_id=message_id)

    def lost(self, message_id: str) -> bool:
        try:
            return message_id.split(".", 1)[0] != self._current()
        except redis.RedisError:  # nothing can be proven while the broker is unreachable
            return False
