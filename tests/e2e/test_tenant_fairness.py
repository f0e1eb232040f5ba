"""Issue 14: one tenant's batch is slowed by its PSA budget, never failed, and never delays
another tenant. Tenant A (ConnectWise) posts 120 resolves at once; tenant B (Autotask) posts one
just after. Every setting is at its default (the sweeper's timings included) except the request
budget's rate, raised so the batch drains in about 75 s instead of 10 minutes: still a minute of
backlog ahead of B, twice the 30 s B is allowed."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.conftest import Stack, http_api, run_cli
from tests.faults.deployment import bare_env, new_database, start_simulator
from tests.faults.outcomes import finished, notes_off
from tests.support import (
    PG_ADMIN_URL,
    REDIS_URL,
    Api,
    Simulator,
)
from tests.support import drop_database as drop

pytestmark = pytest.mark.e2e

BATCH = 120
RATE = 8.0  # requests per second per tenant (ConnectWise's default is 1)
B_WITHIN = 30.0
B_PATIENCE = 120.0  # how long B is waited for, to say how late it was
A_PATIENCE = 2 * BATCH * 5 / RATE  # twice the budget's pace (5 PSA calls per job)
AUTOTASK = {
    "username": "api@acme.example",
    "secret": "at-secret",
    "integration_code": "AT-INTEGRATION",
}


@pytest.fixture
def fair_stack(tmp_path: Path) -> Iterator[Stack]:
    database_url = new_database(PG_ADMIN_URL)
    env = bare_env(database_url, REDIS_URL, tmp_path / "data", WRITEBACK_PSA_RATE=str(RATE))
    stack = Stack(env, tmp_path, "fair")
    yield stack
    stack.stop()
    drop(database_url)


def _tenant(stack: Stack, name: str) -> Api:
    return http_api(stack.url, run_cli(stack.env, "accounts", "create", name)["token"])


def _autotask_connection(client: Api, sim: Simulator) -> int:
    body = {"provider": "autotask", "site_url": sim.url, "company_id": "acme"}
    connection_id = int(
        client.post("/psa-connections", {**body, "credentials": AUTOTASK}, 201)["id"]
    )
    mappings = [{"kind": "resolve", "status": "Complete"}]
    client.put(f"/psa-connections/{connection_id}/status-map", {"mappings": mappings}, expect=200)
    return connection_id


def test_a_tenants_batch_of_120_is_slowed_not_failed_and_does_not_delay_another_tenant(
    fair_stack: Stack, tmp_path: Path
) -> None:
    cw_process, cw = start_simulator("connectwise", tmp_path)
    at_process, autotask = start_simulator("autotask", tmp_path)
    try:
        a, b = _tenant(fair_stack, "tenant-a"), _tenant(fair_stack, "tenant-b")
        a.put("/account-settings", {"resolved_status_id": 42}, expect=200)
        a_connection = a.connect_simulator(cw.url)
        b_connection = _autotask_connection(b, autotask)
        a_tickets = [cw.new_ticket() for _ in range(BATCH)]
        a_sessions = [a.session(a_connection, t) for t in a_tickets]
        b_ticket = autotask.new_ticket()
        b_session = b.session(b_connection, b_ticket)

        with ThreadPoolExecutor(16) as pool:  # the whole batch at once
            a_jobs = list(pool.map(lambda s: a.start(s)["job_id"], a_sessions))
        posted = time.monotonic()
        b_job = b.start(b_session)["job_id"]
        b_final = finished(b, [b_job], posted + B_PATIENCE)[0]
        b_latency = time.monotonic() - posted
        a_final = finished(a, a_jobs, posted + A_PATIENCE)
        print(f"tenant B: {b_final['state']} after {b_latency:.1f} s")

        problems = []
        if b_final["state"] != "succeeded":
            problems.append(f"tenant B's job is {b_final['state']} ({b_final['error']})")
        elif b_latency > B_WITHIN:
            problems.append(f"tenant B's job took {b_latency:.0f} s behind A's batch of {BATCH}")
        outcomes = Counter(
            j["state"] if j["state"] != "failed" else f"failed {j['error']['code']}"
            for j in a_final
        )
        if outcomes != {"succeeded": BATCH}:
            problems.append(f"tenant A's {BATCH} jobs after {A_PATIENCE:.0f} s: {dict(outcomes)}")
        problems += notes_off(cw, a_tickets) + notes_off(autotask, [b_ticket])
        assert not problems, "; ".join(problems)
    finally:
        cw_process.stop()
        at_process.stop()
