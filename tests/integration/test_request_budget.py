"""The request budget is shared by every worker through Redis."""

from __future__ import annotations

import uuid

import pytest
import redis

from tests.support import REDIS_URL
from writeback.adapters.psa.budget import Rate, RedisBucket

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
