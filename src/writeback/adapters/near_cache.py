"""This process's copy of the job versions it read from Redis, dropped the moment the job's
channel says it changed: a poll of an unchanged job then costs no round trip at all.

Correct only while the invalidations flow, so nothing is served from here unless a listener
is subscribed to every job's channel; when it loses Redis the copy is dropped and reads go to
Redis (or, Redis away, to the database) until it has subscribed again. A read that races an
invalidation is not kept (the generation moved)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import redis

from writeback.domain.job_versions import JobVersion

log = logging.getLogger(__name__)

PATTERN = "writeback:job:*:events"


class NearCache:
    def __init__(self, client: redis.Redis, ttl: float = 5.0, size: int = 10_000) -> None:
        self._client, self._ttl, self._size = client, ttl, size
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, JobVersion]] = OrderedDict()
        self._generation = 0
        self._live = False
        self._listener_pid: int | None = None

    def get(self, job_id: str, load: Callable[[], JobVersion | None]) -> JobVersion | None:
        self._ensure_listener()
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(job_id) if self._live else None
            if hit is not None and hit[0] > now:
                return hit[1]
            generation = self._generation
        version = load()
        if version is not None:
            with self._lock:
                if self._live and self._generation == generation:
                    self._entries[job_id] = (now + self._ttl, version)
                    self._entries.move_to_end(job_id)
                    while len(self._entries) > self._size:
                        self._entries.popitem(last=False)
        return version

    def _ensure_listener(self) -> None:
        """One listener per process, started after fork (gunicorn forks its workers)."""
        if self._listener_pid == os.getpid():
            return
        with self._lock:
            if self._listener_pid == os.getpid():
                return
            self._listener_pid, self._live = os.getpid(), False
            self._entries.clear()
        threading.Thread(target=self._listen, name="near-cache", daemon=True).start()

    def drop(self, job_id: str | None, live: bool | None = None) -> None:
        with self._lock:
            self._generation += 1
            if job_id is None:
                self._entries.clear()
            else:
                self._entries.pop(job_id, None)
            if live is not None:
                self._live = live

    def _listen(self) -> None:
        while True:
            pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
            try:
                pubsub.psubscribe(PATTERN)
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "psubscribe":
                        self.drop(None, live=True)  # from here on, no change goes unseen
                    elif message["type"] == "pmessage":
                        self.drop(message["channel"].decode().split(":")[2])
            except redis.RedisError as exc:
                self.drop(None, live=False)
                log.warning(
                    "job versions: invalidations lost (%s); reading Redis", type(exc).__name__
                )
                time.sleep(1.0)
            finally:
                try:
                    pubsub.close()
                except redis.RedisError:
                    pass
