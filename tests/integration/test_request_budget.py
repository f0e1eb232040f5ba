"""The request budget and the job feed are shared by every process through Redis."""

from __future__ import annotations

import uuid

import pytest
import redis

from tests.support import REDIS_URL
from writeback import bootstrap
from writeback.adapters.psa.budget import Rate, RedisBucket, RequestBudget
from writeback.domain.errors import BudgetWait
from writeback.domain.model import JobKind, JobState, WritebackJob, utcnow

pytestmark = pytest.mark.integration


def test_workers_share_one_bucket_per_tenant() -> None:
    client = redis.Redis.from_url(REDIS_URL)
    worker_a, worker_b = RedisBucket(client), RedisBucket(client)
    key, rate = f"writeback:budget:test:{uuid.uuid4().hex}", Rate(per_second=2.0, burst=4)
    try:
        grants = [bucket.take(key, rate) for bucket in (worker_a, worker_b) * 2]
        assert grants == [0.0, 0.0, 0.0, 0.0]  # the burst, split across two workers
        wait = worker_b.take(key, rate)
        assert 0.3 < wait <= 0.5  # the fifth request waits for the refill
        assert worker_a.take(f"{key}-other-tenant", rate) == 0.0
        assert 0 < client.ttl(key) <= 62  # idle buckets expire
    finally:
        client.delete(key)
        client.close()


def test_on_any_broker_every_process_shares_the_budget_and_the_job_feed(
    container: bootstrap.Container,
) -> None:
    """Two processes of one deployment (here two containers): with RabbitMQ as the broker,
    WRITEBACK_REDIS_URL still gives them one budget per tenant and one view of the jobs."""
    other = bootstrap.build(container.settings)
    tenant, rate = f"test-{uuid.uuid4().hex}", Rate(per_second=1.0, burst=1)
    budget_of = {
        "one": RequestBudget(container.bucket, {"connectwise": rate}),
        "other": RequestBudget(other.bucket, {"connectwise": rate}),
    }
    now = utcnow()
    job = WritebackJob(1, 1, JobKind.RESOLVE, tenant, now, now, state=JobState.RUNNING)
    try:
        budget_of["one"].gate("connectwise", tenant)()  # the tenant's one request this second
        with pytest.raises(BudgetWait):
            budget_of["other"].gate("connectwise", tenant)()
        container.feed.publish(job)
        seen = other.feed.version(job.id)
        assert seen is not None and seen == container.feed.version(job.id)
    finally:
        other.close()
