"""The per-tenant request budget and the connect-time SSRF guard, with fake clocks and DNS."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from writeback.adapters.psa.budget import LocalBucket, Rate, RequestBudget
from writeback.adapters.psa.ssrf import guard_url
from writeback.domain.errors import BudgetWait, Failure, InvalidInput, PsaTransientError


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


def _resolver(*addresses: str) -> Any:
    def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        if not addresses:
            raise socket.gaierror("no such host")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    return resolve


@pytest.mark.parametrize(
    "address",
    ["10.0.0.7", "127.0.0.1", "169.254.169.254", "100.64.1.1", "::1", "::ffff:10.0.0.1", "fd00::1"],
)
def test_a_public_name_resolving_to_a_private_address_is_refused(address: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        guard_url("https://psa.rebind.example", allow_private=False, resolve=_resolver(address))
    assert caught.value.field == "site_url"


def test_any_private_address_among_several_is_refused() -> None:
    with pytest.raises(InvalidInput):
        guard_url(
            "https://psa.example",
            allow_private=False,
            resolve=_resolver("203.0.113.9", "192.168.1.4"),
        )


def test_a_host_with_public_addresses_passes() -> None:
    assert (
        guard_url("https://psa.example/", allow_private=False, resolve=_resolver("8.8.8.8"))
        == "https://psa.example"
    )


def test_an_unresolvable_host_is_invalid_when_configuring_and_transient_when_connecting() -> None:
    with pytest.raises(InvalidInput):
        guard_url(
            "https://nx.example", allow_private=False, resolve=_resolver(), unresolvable="invalid"
        )
    with pytest.raises(PsaTransientError):
        guard_url("https://nx.example", allow_private=False, resolve=_resolver())


def test_private_hosts_are_not_even_resolved_when_the_operator_allows_them() -> None:
    assert guard_url("http://cw.local:8089", allow_private=True, resolve=_resolver()) == (
        "http://cw.local:8089"
    )
