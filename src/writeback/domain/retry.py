"""How long the pipeline waits before trying again, and for how long it keeps trying."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of every retry the pipeline makes; times in seconds."""

    # Transient PSA failures (connection, timeout, 5xx, 429) re-run the step as a Celery retry.
    max_attempts: int = 8
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    # Longest countdown handed to the broker; a longer wait is parked in the database and the
    # sweeper re-enqueues the job when it is due (broker redelivery would otherwise duplicate it).
    max_countdown: float = 600.0
    # Status verification retries happen inside the verify step with tenacity: they hold the
    # worker slot, so they stay short.
    verify_attempts: int = 4
    verify_backoff_base: float = 1.0
    verify_backoff_max: float = 8.0
    # After a post_note attempt failed in a way that may hide a stored note (timeout, dropped
    # connection), the PSA may still be writing it: look for it no sooner than this.
    post_settle: float = 60.0
    # A running step whose worker vanished is considered lost after this long.
    step_lease: float = 300.0
    # A queued job whose message never arrived is re-enqueued after this long.
    enqueue_grace: float = 120.0
    # After this many re-enqueues by the sweeper a job fails instead of looping forever.
    max_redeliveries: int = 5

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Delay before attempt `attempt + 1`: full-jitter exponential, never sooner than the
        PSA's Retry-After."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** max(attempt - 1, 0))
        delay = random.uniform(ceiling / 2, ceiling)
        return max(delay, retry_after or 0.0)
