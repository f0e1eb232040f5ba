from __future__ import annotations

from writeback.domain.retry import RetryPolicy


def test_backoff_grows_exponentially_within_the_cap() -> None:
    policy = RetryPolicy(backoff_base=2.0, backoff_max=30.0)
    for attempt, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 30.0), (12, 30.0)]:
        delays = [policy.backoff(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, min(delays), max(delays))


def test_backoff_never_undercuts_retry_after() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_max=5.0)
    assert policy.backoff(1, retry_after=42.0) == 42.0
