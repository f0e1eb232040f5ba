"""Waiting a little for a PSA limit (a budget token, a concurrency slot) instead of giving up at
once, within a bound: the caller is a worker thread or a person's request, and either must be
handed back soon. The limits are kept in Redis: while it does not answer, the caller waits for
our own part (PartUnavailable), which is never a PSA attempt."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from writeback.domain.errors import PartUnavailable


def patiently(
    attempt: Callable[[], float],
    patience: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> float:
    """Run `attempt` (0.0: it succeeded; else the seconds until it may) until it succeeds or its
    next wait would end more than `patience` seconds from now. Returns that wait (0.0: done)."""
    deadline = clock() + patience
    while True:
        try:
            wait = attempt()
        except redis.RedisError as exc:
            raise PartUnavailable(f"Redis did not answer: {type(exc).__name__}") from exc
        if wait <= 0 or clock() + wait > deadline:
            return wait
        sleep(wait)
