"""A request budget per PSA tenant, shared by every worker: a token bucket in Redis (or in the
process, on the embedded defaults). A burst of jobs for one tenant is spread out instead of
provoking a storm of 429s. A request that does not fit is not sent and not waited for in the
worker: BudgetWait tells the pipeline when a token is due, and the job is held until then."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis

from writeback.domain.errors import BudgetWait, PartUnavailable


@dataclass(frozen=True)
class Rate:
    per_second: float
    burst: int


# What each vendor tolerates (their public documentation): ConnectWise ~60/min (unpublished),
# Autotask 10,000/h per database shared by all integrations, HaloPSA ~500 per 3 min.
DEFAULT_RATES = {
    "connectwise": Rate(1.0, 10),
    "autotask": Rate(2.0, 10),
    "halopsa": Rate(2.5, 10),
}


class Bucket(Protocol):
    def take(self, key: str, rate: Rate, count: int = 1) -> float:
        """Take `count` tokens at once: 0.0 when granted, else the seconds until they are free
        (none taken)."""
        ...


_TAKE = """
local rate, burst, count = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= count then tokens = tokens - count else wait = (count - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return tostring(wait)
"""


class RedisBucket:
    """One Lua script per take: atomic across workers, timed by the Redis server's clock."""

    def __init__(self, client: redis.Redis) -> None:
        self._take = client.register_script(_TAKE)

    def take(self, key: str, rate: Rate, count: int = 1) -> float:
        return float(self._take(keys=[key], args=[rate.per_second, rate.burst, count]))


class LocalBucket:
    """The embedded default (no Redis): a budget per process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key: str, rate: Rate, count: int = 1) -> float:
        with self._lock:
            now = self._clock()
            tokens, ts = self._state.get(key, (float(rate.burst), now))
            tokens = min(rate.burst, tokens + max(0.0, now - ts) * rate.per_second)
            wait = 0.0
            if tokens >= count:
                tokens -= count
            else:
                wait = (count - tokens) / rate.per_second
            self._state[key] = (tokens, now)
            return wait


class RequestBudget:
    def __init__(self, bucket: Bucket, rates: dict[str, Rate]) -> None:
        self._bucket, self._rates = bucket, rates

    def gate(self, provider: str, tenant: str, prepay: int = 1) -> Callable[[], None]:
        """What to call before each request to that tenant. The first call takes `prepay`
        tokens at once (what the step is about to send), so a step never spends part of the
        budget on reads only to be held before its write, and come back to read again."""
        rate, key = self._rates[provider], f"writeback:budget:{provider}:{tenant}"
        prepaid = 0
        first = min(max(prepay, 1), rate.burst)

        def acquire() -> None:
            nonlocal prepaid, first
            if prepaid > 0:
                prepaid -= 1
                return
            count = first
            try:
                wait = self._bucket.take(key, rate, count)
            except redis.RedisError as exc:  # our own part is away: a wait, not a PSA attempt
                raise PartUnavailable(
                    f"The request budget (Redis) did not answer: {type(exc).__name__}"
                ) from exc
            if wait > 0:
                # Spread over one more token's time, so the tenant's held jobs do not all come
                # back for the same token.
                raise BudgetWait(
                    f"{provider} request budget for this tenant is spent",
                    wait + random.uniform(0, 1 / rate.per_second),
                )
            prepaid, first = count - 1, 1

        return acquire
