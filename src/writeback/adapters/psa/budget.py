"""A request budget per PSA instance, shared by every worker and API process: a token bucket in
Redis (or in the process, on the embedded defaults). A burst of jobs for one PSA is spread out
instead of provoking a storm of 429s.

Jobs and people spend it differently. A job's request that does not fit is not sent and not
waited for in the worker: BudgetWait tells the pipeline when a token is due, and the job is held
until then. Jobs leave PEOPLE_RESERVE tokens in the bucket; a person waiting on a connection
check or a list of statuses may take them, and waits up to PEOPLE_PATIENCE seconds for a token.
So a batch that keeps the budget spent for hours never starves a person: the next tokens go to
the reserve first. Only a person who needs more than that gets BudgetWait (the API answers 429
with Retry-After)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis

from writeback.adapters.psa.waiting import patiently
from writeback.domain.errors import BudgetWait
from writeback.domain.model import PsaConnection


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
# Tokens jobs leave for people: a connection check or a list of statuses is 1 to 3 requests.
PEOPLE_RESERVE = 3
# Seconds a person's request may wait for a token, on top of the reserve.
PEOPLE_PATIENCE = 2.0


def budget_key_of(connection: PsaConnection) -> str:
    """Whose budget a connection's requests spend: the PSA instance (site and company), which
    several connections share when two accounts, or one account twice, connect the same PSA;
    its limit counts all of them. This is not the "tenant" of job admission (`psa:{connection
    id}`, `model.tenant_of`), which bounds one connection's jobs in flight so that no backlog
    queues ahead of another connection's jobs: admission is fairness between our connections,
    the budget is what one PSA tolerates from all of them."""
    return f"{connection.site_url}|{connection.company_id}"


class Bucket(Protocol):
    def take(self, key: str, rate: Rate, count: int = 1, keep: int = 0) -> float:
        """Take `count` tokens at once, leaving at least `keep`: 0.0 when granted, else the
        seconds until they are free (none taken)."""
        ...


_TAKE = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local count, keep = tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens - keep >= count then
  tokens = tokens - count
else
  wait = (count + keep - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return tostring(wait)
"""


class RedisBucket:
    """One Lua script per take: atomic across workers, timed by the Redis server's clock."""

    def __init__(self, client: redis.Redis) -> None:
        self._take = client.register_script(_TAKE)

    def take(self, key: str, rate: Rate, count: int = 1, keep: int = 0) -> float:
        return float(self._take(keys=[key], args=[rate.per_second, rate.burst, count, keep]))


class LocalBucket:
    """The embedded default (no Redis): a budget per process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key: str, rate: Rate, count: int = 1, keep: int = 0) -> float:
        with self._lock:
            now = self._clock()
            tokens, ts = self._state.get(key, (float(rate.burst), now))
            tokens = min(rate.burst, tokens + max(0.0, now - ts) * rate.per_second)
            wait = 0.0
            if tokens - keep >= count:
                tokens -= count
            else:
                wait = (count + keep - tokens) / rate.per_second
            self._state[key] = (tokens, now)
            return wait


class RequestBudget:
    def __init__(
        self,
        bucket: Bucket,
        rates: dict[str, Rate],
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bucket, self._rates = bucket, rates
        self._sleep, self._clock = sleep, clock

    def gate(
        self, provider: str, budget_key: str, prepay: int = 1, *, person: bool = False
    ) -> Callable[[], None]:
        """What to call before each request to that PSA. The first call takes `prepay` tokens
        at once (what the step is about to send), so a step never spends part of the budget on
        reads only to be held before its write, and come back to read again. A job's gate
        leaves the people's reserve and never waits; a `person`'s may take the reserve and
        waits up to PEOPLE_PATIENCE seconds."""
        rate, key = self._rates[provider], f"writeback:budget:{provider}:{budget_key}"
        keep = 0 if person else min(PEOPLE_RESERVE, rate.burst - 1)
        patience = PEOPLE_PATIENCE if person else 0.0
        prepaid = 0
        first = min(max(prepay, 1), rate.burst - keep)

        def acquire() -> None:
            nonlocal prepaid, first
            if prepaid > 0:
                prepaid -= 1
                return
            count = first
            wait = patiently(
                lambda: self._bucket.take(key, rate, count, keep),
                patience,
                sleep=self._sleep,
                clock=self._clock,
            )
            if wait > 0:
                # Spread over one more token's time, so the PSA's held jobs do not all come
                # back for the same token.
                raise BudgetWait(
                    f"The {provider} request budget for this PSA is spent",
                    wait + random.uniform(0, 1 / rate.per_second),
                )
            prepaid, first = count - 1, 1

        return acquire
