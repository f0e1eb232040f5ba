"""Waiting a little for a PSA limit (a budget token, a concurrency slot) instead of giving up at
once, within a bound: the caller is a worker thread or a person's request, and either must be
handed back soon."""

from __future__ import annotations

import time
from collections.abc import Callable


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
        wait = attempt()
        if wait <= 0 or clock() + wait > deadline:
            return wait
        sleep(wait)
