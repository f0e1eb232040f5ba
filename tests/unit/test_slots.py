"""Vendors' concurrency limits: slots under a lease, a short bounded wait for one, and Autotask's
declaration (a fake clock; Redis in tests/integration/test_psa_limits.py)."""

from __future__ import annotations

import pytest

from writeback.adapters.psa import autotask
from writeback.adapters.psa.slots import (
    SLOT_PATIENCE,
    ConcurrencyLimit,
    LocalSlots,
    slot_taker,
)
from writeback.domain.errors import BudgetWait, ConcurrencyWait, Failure


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _by_path(url: str) -> str | None:
    """A test vendor whose endpoint is the URL's first path segment, `free` uncounted."""
    endpoint = url.split("/")[3]
    return None if endpoint == "free" else endpoint


TWO_AT_ONCE = ConcurrencyLimit(2, _by_path, per_credential="code")


def test_slots_are_held_up_to_the_limit_until_released_or_their_lease_ends() -> None:
    clock = Clock()
    slots = LocalSlots(clock)
    first, second = slots.acquire("k", 2, lease=10), slots.acquire("k", 2, lease=10)
    assert first and second and first != second
    assert slots.acquire("k", 2, lease=10) is None
    assert slots.acquire("other endpoint", 2, lease=10) is not None
    slots.release("k", first)
    assert slots.acquire("k", 2, lease=10) is not None
    clock.now += 10.5  # both holders died without a word: their leases ran out
    assert slots.acquire("k", 2, lease=10) and slots.acquire("k", 2, lease=10)


def test_a_request_waits_briefly_for_a_slot_of_its_endpoint() -> None:
    clock = Clock()
    slots = LocalSlots(clock)
    take = slot_taker(slots, TWO_AT_ONCE, "psa", lease=60, sleep=clock.sleep, clock=clock)
    take("https://psa/tickets/1"), take("https://psa/tickets/2")
    release = take("https://psa/notes/1")  # another endpoint counts apart
    for _ in range(3):
        take("https://psa/free/1")  # an uncounted endpoint takes no slot
    assert clock.now == 0.0
    release()
    with pytest.raises(ConcurrencyWait) as caught:
        take("https://psa/tickets/3")
    assert clock.now == pytest.approx(SLOT_PATIENCE, abs=0.1)  # bounded: then the job is held
    assert isinstance(caught.value, BudgetWait) and caught.value.failure is Failure.TRANSIENT
    assert caught.value.wait > 0  # held, not failed: the pipeline counts no attempt


def test_a_slot_freed_while_waiting_is_taken() -> None:
    clock = Clock()
    slots = LocalSlots(clock)
    held = slot_taker(slots, TWO_AT_ONCE, "psa", lease=1.0, sleep=clock.sleep, clock=clock)
    held("https://psa/tickets/1"), held("https://psa/tickets/2")
    # Their holders die: the leases end a second later, well within the waiter's patience.
    release = held("https://psa/tickets/3")
    assert clock.now == pytest.approx(1.0, abs=0.1)
    release()


def test_the_scope_counts_by_credential_without_showing_it() -> None:
    scope = TWO_AT_ONCE.scope({"code": "SECRET-CODE", "other": "x"})
    assert scope == TWO_AT_ONCE.scope({"code": "SECRET-CODE", "other": "y"})
    assert scope != TWO_AT_ONCE.scope({"code": "ANOTHER-CODE"})
    assert "SECRET" not in scope


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("https://webservices5.autotask.net/ATServicesRest/V1.0/Tickets/7", "tickets"),
        ("https://webservices5.autotask.net/atservicesrest/v1.0/Tickets/7/Notes", "tickets"),
        ("https://ws.example/atservicesrest/V1.0/TicketNotes/query", "ticketnotes"),
        ("https://ws.example/atservicesrest/V1.0/Tickets/entityInformation/fields", "tickets"),
        ("https://webservices.autotask.net/atservicesrest/v1.0/ZoneInformation", None),
    ],
)
def test_autotask_counts_requests_per_object_endpoint(url: str, endpoint: str | None) -> None:
    assert autotask.thread_endpoint(url) == endpoint


def test_autotask_declares_its_documented_thread_limit() -> None:
    limit = autotask.THREAD_LIMIT
    assert (limit.requests, limit.per_credential) == (3, "integration_code")
