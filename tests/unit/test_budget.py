"""The per-PSA request budget, with a fake clock (the SSRF guard: test_ssrf_guard.py)."""

from __future__ import annotations

import pytest

from writeback.adapters.psa.budget import (
    PEOPLE_PATIENCE,
    PEOPLE_RESERVE,
    LocalBucket,
    Rate,
    RequestBudget,
)
from writeback.domain.errors import BudgetWait, Failure


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _budget(clock: Clock, rate: Rate) -> RequestBudget:
    return RequestBudget(LocalBucket(clock), {"connectwise": rate}, sleep=clock.sleep, clock=clock)


def test_a_bucket_grants_its_burst_then_its_rate() -> None:
    clock = Clock()
    bucket, rate = LocalBucket(clock), Rate(per_second=2.0, burst=3)
    assert [bucket.take("t", rate) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("t", rate) == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.take("t", rate) == 0.0
    assert bucket.take("other tenant", rate) == 0.0


def test_a_take_that_must_keep_tokens_waits_until_it_can() -> None:
    clock = Clock()
    bucket, rate = LocalBucket(clock), Rate(per_second=1.0, burst=4)
    assert bucket.take("t", rate, count=1, keep=3) == 0.0
    assert bucket.take("t", rate, count=1, keep=3) == pytest.approx(1.0)  # 3 left: all kept
    assert bucket.take("t", rate, count=3) == 0.0  # a take that keeps none gets them


def test_a_jobs_gate_never_sleeps_it_says_when_a_token_is_due() -> None:
    clock = Clock()
    gate = _budget(clock, Rate(0.5, 2 + PEOPLE_RESERVE)).gate("connectwise", "cw|ACME")
    gate(), gate()  # the burst, less the people's reserve
    with pytest.raises(BudgetWait) as caught:
        gate()
    assert clock.slept == []
    # due in 2 s, spread over at most one more token's time so held jobs do not collide
    assert 2.0 <= caught.value.wait <= 4.0
    assert caught.value.failure is Failure.TRANSIENT


def test_a_step_pays_for_its_requests_up_front_or_sends_none() -> None:
    clock = Clock()
    bucket, rate = LocalBucket(clock), Rate(1.0, 4 + PEOPLE_RESERVE)
    budget = RequestBudget(bucket, {"connectwise": rate}, sleep=clock.sleep, clock=clock)
    step = budget.gate("connectwise", "t", prepay=3)
    step(), step(), step()  # one take of 3 tokens, then two prepaid requests
    assert bucket.take("writeback:budget:connectwise:t", rate, keep=PEOPLE_RESERVE) == 0.0
    late = budget.gate("connectwise", "t", prepay=3)
    with pytest.raises(BudgetWait) as caught:
        late()  # 3 tokens are not there: nothing is taken, nothing sent
    assert 3.0 <= caught.value.wait <= 4.0
    clock.now += 3.0
    late()  # now they are


def test_a_step_never_asks_for_more_than_a_job_may_ever_take() -> None:
    clock = Clock()
    gate = _budget(clock, Rate(1.0, PEOPLE_RESERVE + 2)).gate("connectwise", "t", prepay=5)
    gate(), gate()  # 2 tokens is all a job may hold: prepaying 5 would wait forever
    with pytest.raises(BudgetWait):
        gate()


def test_a_batch_that_spends_the_budget_leaves_a_person_the_reserve() -> None:
    clock = Clock()
    budget = _budget(clock, Rate(1.0, 10))
    job = budget.gate("connectwise", "t")
    for _ in range(10 - PEOPLE_RESERVE):
        job()
    with pytest.raises(BudgetWait):
        budget.gate("connectwise", "t")()  # the next job waits...
    person = budget.gate("connectwise", "t", person=True)
    for _ in range(PEOPLE_RESERVE):
        person()  # ...while a person's requests go at once
    assert clock.slept == []


def test_a_person_waits_for_a_token_only_when_it_is_due_soon() -> None:
    clock = Clock()
    budget = _budget(clock, Rate(1.0, 1))  # no room for a reserve: a person waits like a job
    person = budget.gate("connectwise", "t", person=True)
    person()
    person()  # the next token is 1 s away: worth waiting for
    assert clock.slept == [pytest.approx(1.0)]
    slow = _budget(Clock(), Rate(1 / (2 * PEOPLE_PATIENCE), 1))
    slow_person = slow.gate("connectwise", "t", person=True)
    slow_person()
    with pytest.raises(BudgetWait) as caught:
        slow_person()  # 2 × the patience away: not worth holding the request
    assert caught.value.wait >= 2 * PEOPLE_PATIENCE
