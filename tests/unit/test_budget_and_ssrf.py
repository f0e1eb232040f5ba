"""The per-tenant request budget, with a fake clock (the SSRF guard: test_ssrf_guard.py)."""

from __future__ import annotations

import pytest

from writeback.adapters.psa.budget import LocalBucket, Rate, RequestBudget
from writeback.domain.errors import PsaTransientError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_bucket_grants_its_burst_then_its_rate() -> None:
    clock = Clock()
    bucket, rate = LocalBucket(clock), Rate(per_second=2.0, burst=3)
    assert [bucket.take("t", rate) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("t", rate) == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.take("t", rate) == 0.0
    assert bucket.take("other tenant", rate) == 0.0


def test_the_gate_waits_briefly_then_defers_with_retry_after() -> None:
    clock = Clock()
    budget = RequestBudget(
        LocalBucket(clock),
        {"connectwise": Rate(1.0, 2)},
        max_inline_wait=2.5,
        defer_spread=0.0,
        sleep=clock.sleep,
    )
    gate = budget.gate("connectwise", "https://cw.example|ACME")
    for _ in range(4):  # two from the burst, two after a 1 s wait each
        gate()
    assert clock.now == pytest.approx(2.0)
    budget_short = RequestBudget(
        LocalBucket(clock),
        {"connectwise": Rate(0.1, 1)},
        max_inline_wait=1.0,
        defer_spread=0.0,
        sleep=clock.sleep,
    )
    short_gate = budget_short.gate("connectwise", "t")
    short_gate()
    with pytest.raises(PsaTransientError) as caught:
        short_gate()
    assert caught.value.retry_after == pytest.approx(10.0)
