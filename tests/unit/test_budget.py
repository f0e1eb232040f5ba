"""The per-tenant request budget, with a fake clock (the SSRF guard: test_ssrf_guard.py)."""

from __future__ import annotations

import pytest

from writeback.adapters.psa.budget import LocalBucket, Rate, RequestBudget
from writeback.domain.errors import BudgetWait, Failure


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


def test_the_gate_never_sleeps_it_says_when_a_token_is_due() -> None:
    clock = Clock()
    budget = RequestBudget(LocalBucket(clock), {"connectwise": Rate(0.5, 2)})
    gate = budget.gate("connectwise", "https://cw.example|ACME")
    gate(), gate()  # the burst
    with pytest.raises(BudgetWait) as caught:
        gate()
    assert clock.now == 0.0  # nothing slept
    # due in 2 s, spread over at most one more token's time so held jobs do not collide
    assert 2.0 <= caught.value.wait <= 4.0
    assert caught.value.failure is Failure.TRANSIENT


def test_a_step_pays_for_its_requests_up_front_or_sends_none() -> None:
    clock = Clock()
    bucket, rate = LocalBucket(clock), Rate(1.0, 4)
    budget = RequestBudget(bucket, {"connectwise": rate})
    step = budget.gate("connectwise", "t", prepay=3)
    step(), step(), step()  # one take of 3 tokens, then two prepaid requests
    assert bucket.take("writeback:budget:connectwise:t", rate) == 0.0  # the 4th token is left
    late = budget.gate("connectwise", "t", prepay=3)
    with pytest.raises(BudgetWait) as caught:
        late()  # 3 tokens are not there: nothing is taken, nothing sent
    assert 3.0 <= caught.value.wait <= 4.0
    clock.now += 3.0
    late()  # now they are
