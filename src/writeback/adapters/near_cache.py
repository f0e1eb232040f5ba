"""This process's copy of the job versions it read from Redis, dropped the moment the job's
channel says it changed: a poll of an unchanged job then costs no round trip at all.

Correct only while the invalidations flow, so nothing is served from here unless the feed's
listener is subscribed (`reset(live=True)`); when it loses Redis the copy is dropped and reads
go to Redis (or, Redis away, to the database) until it has subscribed again. A read that races
an invalidation is not kept (the generation moved)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from cachetools import TTLCache

from writeback.domain.job_versions import JobVersion


class NearCache:
    def __init__(self, ttl: float = 5.0, size: int = 10_000) -> None:
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe on their own
        self._entries: TTLCache[str, JobVersion] = TTLCache(size, ttl)
        self._generation = 0
        self._live = False

    def get(self, job_id: str, load: Callable[[], JobVersion | None]) -> JobVersion | None:
        with self._lock:
            hit = self._entries.get(job_id) if self._live else None
            generation = self._generation
        if hit is not None:
            return hit
        version = load()
        if version is not None:
            with self._lock:
                if self._live and self._generation == generation:
                    self._entries[job_id] = version
        return version

    def drop(self, job_id: str) -> None:
        with self._lock:
            self._generation += 1
            self._entries.pop(job_id, None)

    def reset(self, *, live: bool) -> None:
        """Forget everything; from here on serve copies only if `live` (invalidations flow)."""
        with self._lock:
            self._generation += 1
            self._entries.clear()
            self._live = live
