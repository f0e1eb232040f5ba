"""JobFeed adapters: Redis for deployments, in-process for the embedded defaults.

Through Redis, the worker keeps each in-flight job's API answer under one key (plain JSON) and
says on the job's channel that it changed. Each process has one listener on those channels: it
drops the process's copy of the job's version and wakes the event streams that follow the job,
so an open stream costs no Redis connection of its own."""

from __future__ import annotations

import json
import logging
import os
import threading
import time

import redis

from writeback.adapters.job_view import JobView
from writeback.adapters.near_cache import NearCache
from writeback.domain.job_versions import JobVersion, version_of
from writeback.domain.model import WritebackJob

log = logging.getLogger(__name__)

# Only in-flight jobs are kept, the ones frontends poll, and not for long: a transition made
# where nothing publishes (a sweep, a bulk re-post) or while Redis was away is then shown late
# by at most this, never as a wrong final state. A final job is read from the database: one that
# is re-posted later must not keep answering "failed" from here.
IN_FLIGHT_TTL = 60
CHANNELS = "writeback:job:*:events"
RECONNECT_DELAY = 1.0


def _key(job_id: str) -> str:
    # Not the `:version` key of the four-line format before it: during a rolling upgrade each
    # release reads only what its own kind wrote (and the other's is gone within the TTL).
    return f"writeback:job:{job_id}:json"


def _channel(job_id: str) -> str:
    return f"writeback:job:{job_id}:events"


class Wakeups:
    """The event streams of this process, by job: `notify` wakes those following the job."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._following: dict[str, set[Wakeup]] = {}

    def follow(self, job_id: str) -> Wakeup:
        wakeup = Wakeup(self, job_id)
        with self._lock:
            self._following.setdefault(job_id, set()).add(wakeup)
        return wakeup

    def notify(self, job_id: str | None) -> None:
        """Wake the streams of `job_id`, or of every job (None: changes may have been missed)."""
        with self._lock:
            woken = [
                wakeup
                for followed, wakeups in self._following.items()
                if job_id is None or followed == job_id
                for wakeup in wakeups
            ]
        for wakeup in woken:
            wakeup.set()

    def forget(self, wakeup: Wakeup) -> None:
        with self._lock:
            wakeups = self._following.get(wakeup.job_id, set())
            wakeups.discard(wakeup)
            if not wakeups:
                self._following.pop(wakeup.job_id, None)


class Wakeup:
    """A Subscription: `wait` returns True if the job changed since the last wait (or since
    `follow`), False after `timeout` without a change."""

    def __init__(self, wakeups: Wakeups, job_id: str) -> None:
        self._wakeups, self.job_id = wakeups, job_id
        self._changed = threading.Event()

    def set(self) -> None:
        self._changed.set()

    def wait(self, timeout: float) -> bool:
        woke = self._changed.wait(timeout)
        # A change notified between the wait and here is not lost: the caller reads the store
        # next, after it happened.
        self._changed.clear()
        return woke

    def close(self) -> None:
        self._wakeups.forget(self)


class RedisJobFeed:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._near = NearCache()
        self._wakeups = Wakeups()
        self._lock = threading.Lock()
        self._listener_pid: int | None = None

    def publish(self, job: WritebackJob) -> None:
        version = version_of(job)
        try:
            pipe = self._redis.pipeline(transaction=False)
            if version.final:
                pipe.delete(_key(job.id))
            else:
                stored = {
                    "account_id": job.account_id,
                    "etag": version.etag,
                    "job": JobView.of(job).body(),
                }
                pipe.set(_key(job.id), json.dumps(stored), ex=IN_FLIGHT_TTL)
            pipe.publish(_channel(job.id), "")  # a wake-up: followers read the store
            pipe.execute()
        except redis.RedisError as exc:  # the transition is committed; followers fall back
            log.warning("job feed: publish of job %s failed: %s", job.id, type(exc).__name__)
        self._changed(job.id)  # this process sees its own change at once

    def version(self, job_id: str) -> JobVersion | None:
        self._start_listener()
        return self._near.get(job_id, lambda: self._read_version(job_id))

    def _read_version(self, job_id: str) -> JobVersion | None:
        try:
            raw = self._redis.get(_key(job_id))
        except redis.RedisError as exc:  # a cache: the database answers instead
            log.warning("job feed: version of job %s unreadable: %s", job_id, type(exc).__name__)
            return None
        if raw is None:
            return None
        stored = json.loads(raw)
        job = stored["job"]
        return JobVersion(stored["account_id"], stored["etag"], job["poll_after_ms"], job)

    def subscribe(self, job_id: str) -> Wakeup:
        wakeup = self._wakeups.follow(job_id)
        self._start_listener()
        return wakeup

    def _changed(self, job_id: str | None) -> None:
        if job_id is None:
            self._near.reset(live=False)
        else:
            self._near.drop(job_id)
        self._wakeups.notify(job_id)

    def _start_listener(self) -> None:
        """One listener per process, started on first use (gunicorn forks its workers after the
        app is built, and a thread does not survive a fork)."""
        if self._listener_pid == os.getpid():
            return
        with self._lock:
            if self._listener_pid == os.getpid():
                return
            self._listener_pid = os.getpid()
            self._near.reset(live=False)
        threading.Thread(target=self._listen, name="job-feed", daemon=True).start()

    def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub()  # type: ignore[no-untyped-call]
            try:
                pubsub.psubscribe(CHANNELS)
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "psubscribe":  # from here on, no change goes unseen
                        self._wakeups.notify(None)  # streams read once more what they missed
                        self._near.reset(live=True)
                    elif message["type"] == "pmessage":
                        self._changed(message["channel"].decode().split(":")[2])
            except redis.RedisError as exc:
                self._changed(None)
                log.warning("job feed: changes unheard (%s); reading Redis", type(exc).__name__)
                time.sleep(RECONNECT_DELAY)
            finally:
                try:
                    pubsub.close()
                except redis.RedisError:
                    pass


class LocalJobFeed:
    """Wakes followers in this process only. It keeps no versions: on the embedded defaults
    the worker is another process, and a version this process cannot see change would answer
    304 for a changed job."""

    def __init__(self) -> None:
        self._wakeups = Wakeups()

    def publish(self, job: WritebackJob) -> None:
        self._wakeups.notify(job.id)

    def version(self, job_id: str) -> JobVersion | None:
        return None

    def subscribe(self, job_id: str) -> Wakeup:
        return self._wakeups.follow(job_id)
