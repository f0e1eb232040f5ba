"""A vendor's limit on requests in flight at once (Autotask: 3 per object endpoint and
integration code), kept by every worker and API process together: one slot per request, held
in Redis (or in the process, on the embedded defaults) under a lease, so that a holder that
dies frees its slot when the lease runs out.

A request that finds every slot taken waits up to SLOT_PATIENCE seconds for one. If none comes
free it is not sent: ConcurrencyWait holds the job like a spent budget (no attempt counted, no
worker thread held longer), and a person's route answers 429 with Retry-After."""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import redis

from writeback.adapters.psa.waiting import patiently
from writeback.domain.errors import ConcurrencyWait

SLOT_PATIENCE = 2.0  # seconds a request may wait for a slot
SLOT_POLL = 0.05  # seconds between looks for a free slot
# A job that found no slot comes back after about this long: the holders' requests are done.
SLOT_RETRY = 1.0

# What frees a request's place once it has its answer.
Release = Callable[[], None]

log = logging.getLogger(__name__)


def _nothing() -> None:
    """The release of a request that took no slot."""


def no_slot(url: str) -> Release:
    """The slot taker of a vendor without a concurrency limit."""
    return _nothing


@dataclass(frozen=True)
class ConcurrencyLimit:
    """A vendor's documented limit, declared by its provider (`ProviderSpec.concurrency`)."""

    requests: int  # in flight at once, per endpoint
    # The endpoint a request URL counts against; None: the vendor does not count it.
    endpoint: Callable[[str], str | None]
    # The credential whose requests count together (Autotask's integration code); None: all
    # requests to the PSA instance do.
    per_credential: str | None = None

    def scope(self, credentials: Mapping[str, str]) -> str:
        """Whose requests count together, as a digest: Redis keys must not show a credential."""
        if self.per_credential is None:
            return ""
        return hashlib.sha256(credentials[self.per_credential].encode()).hexdigest()[:16]


class Slots(Protocol):
    def acquire(self, key: str, limit: int, lease: float) -> str | None:
        """A slot under `key` for `lease` seconds when fewer than `limit` are held (expired
        leases are not): its token, else None."""
        ...

    def release(self, key: str, token: str) -> None: ...


_ACQUIRE = """
local limit, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 1000))
return 1
"""


class RedisSlots:
    """A sorted set per endpoint, holders scored by their lease's end on the Redis server's
    clock; one Lua script drops the ended leases and takes a slot, atomically."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._acquire = client.register_script(_ACQUIRE)

    def acquire(self, key: str, limit: int, lease: float) -> str | None:
        token = uuid.uuid4().hex
        return token if self._acquire(keys=[key], args=[limit, lease, token]) == 1 else None

    def release(self, key: str, token: str) -> None:
        self._client.zrem(key, token)


class LocalSlots:
    """The embedded default (no Redis): slots per process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[str, dict[str, float]] = {}  # key -> token -> lease end

    def acquire(self, key: str, limit: int, lease: float) -> str | None:
        with self._lock:
            now = self._clock()
            held = {t: end for t, end in self._held.get(key, {}).items() if end > now}
            self._held[key] = held
            if len(held) >= limit:
                return None
            token = uuid.uuid4().hex
            held[token] = now + lease
            return token

    def release(self, key: str, token: str) -> None:
        with self._lock:
            self._held.get(key, {}).pop(token, None)


def slot_taker(
    slots: Slots,
    limit: ConcurrencyLimit,
    scope: str,
    *,
    lease: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[str], Release]:
    """What to call before each request (by URL) whose requests count together under `scope`:
    it returns once the request has a slot of its endpoint, with what gives the slot back."""

    def take(url: str) -> Release:
        endpoint = limit.endpoint(url)
        if endpoint is None:
            return _nothing
        key = f"writeback:slots:{scope}:{endpoint}"
        token: str | None = None

        def attempt() -> float:
            nonlocal token
            token = slots.acquire(key, limit.requests, lease)
            return 0.0 if token is not None else SLOT_POLL

        patiently(attempt, SLOT_PATIENCE, sleep=sleep, clock=clock)
        if token is None:
            raise ConcurrencyWait(
                f"{limit.requests} requests to this PSA's {endpoint} endpoint are in flight "
                "already, the most it allows at once",
                SLOT_RETRY + random.uniform(0, SLOT_RETRY),
            )
        held = token

        def release() -> None:
            try:
                slots.release(key, held)
            except redis.RedisError:  # its lease frees the slot a little later
                log.warning("slot %s not released: Redis did not answer", key)

        return release

    return take
