"""Issue 21: the PSA's limits are ours too. Real Redis keeps the request budget and the
concurrency slots for every process; a real worker runs the jobs; the simulators answer over
HTTP and refuse what the vendors refuse (Autotask: a fourth request in flight per endpoint)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
import requests
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.integration.conftest import flask_sender
from tests.support import (
    REDIS_URL,
    Api,
    Simulator,
    celery_worker,
    create_database,
    deployment_env,
    drop_database,
    wait_until,
)
from writeback import bootstrap
from writeback.adapters.psa.slots import RedisSlots
from writeback.api import create_app
from writeback.config import load_settings
from writeback.domain.errors import PsaTransientError
from writeback_simulators import autotask, connectwise
from writeback_simulators.server import RunningServer, serve

pytestmark = pytest.mark.integration

AUTOTASK = {
    "provider": "autotask",
    "company_id": "acme",
    "credentials": {
        "username": autotask.USERNAME,
        "secret": autotask.SECRET,
        "integration_code": autotask.INTEGRATION_CODE,
    },
}


@pytest.fixture(scope="module")
def autotask_server() -> Iterator[RunningServer]:
    with serve(autotask.create_app()) as server:
        yield server


@pytest.fixture
def autotask_sim(autotask_server: RunningServer) -> Simulator:
    """No faults, no request log, no thread peaks yet."""
    requests.post(f"{autotask_server.url}/__sim/reset", timeout=5).raise_for_status()
    return Simulator(autotask_server.url)


def _autotask_connection(api: Api, sim: Simulator) -> int:
    connection_id = int(api.post("/psa-connections", {**AUTOTASK, "site_url": sim.url}, 201)["id"])
    mappings = [{"kind": "resolve", "status": "Complete"}]
    api.put(f"/psa-connections/{connection_id}/status-map", {"mappings": mappings}, expect=200)
    return connection_id


def _peaks(sim: Simulator) -> dict[str, int]:
    peaks: dict[str, int] = requests.get(f"{sim.url}/__sim/threads", timeout=5).json()["peaks"]
    return peaks


def _refused(sim: Simulator) -> list[dict[str, Any]]:
    return [call for call in sim.all_calls() if call["status"] == 429]


def test_eight_autotask_jobs_at_once_keep_three_requests_in_flight_per_endpoint(
    api: Api, autotask_sim: Simulator
) -> None:
    """Admission runs 4 jobs of a connection at once (WRITEBACK_TENANT_SLOTS), one more than
    Autotask allows per endpoint; every answer takes 0.3 s, so their requests overlap."""
    connection_id = _autotask_connection(api, autotask_sim)
    tickets = [autotask_sim.new_ticket() for _ in range(8)]
    sessions = [api.session(connection_id, ticket) for ticket in tickets]
    requests.post(
        f"{autotask_sim.url}/__sim/faults",
        json={"kind": "slow", "delay": 0.3, "path_contains": "/V1.0/", "times": -1},
        timeout=5,
    ).raise_for_status()

    jobs = [api.start(session)["job_id"] for session in sessions]
    finished = [api.wait_job(job_id, timeout=120) for job_id in jobs]

    assert [(j["state"], j["attempts"]) for j in finished] == [("succeeded", 0)] * 8
    assert _refused(autotask_sim) == []
    peaks = _peaks(autotask_sim)
    assert max(peaks.values()) <= 3
    assert peaks["Tickets"] == 3  # the limit was reached, and never passed
    assert [len(autotask_sim.ticket(t)["notes"]) for t in tickets] == [1] * 8


def test_a_person_gets_429_while_jobs_hold_every_slot_and_an_answer_once_one_frees(
    api: Api,
    autotask_sim: Simulator,
    container: bootstrap.Container,
    flask_client: FlaskClient,
) -> None:
    """Three of a worker's reads hang for 3 s on Autotask's Tickets endpoint (they time out
    after WRITEBACK_PSA_TIMEOUT=2 s, and keep their slots while Autotask may still run them):
    the statuses route, which reads that endpoint, waits a short while and answers 429."""
    connection_id = _autotask_connection(api, autotask_sim)
    with container.uow() as tx:
        connection = tx.connections.get(connection_id)
    assert connection is not None
    ticket = autotask_sim.new_ticket()
    autotask_sim.fault("slow", ticket, method="GET", delay=3.0, times=3)
    statuses = f"/api/v1/psa-connections/{connection_id}/boards/all/statuses"

    def job_read() -> None:
        with pytest.raises(PsaTransientError, match="timed out"):
            container.registry.build(connection).get_ticket(ticket)

    with ThreadPoolExecutor(3) as pool:
        reads = [pool.submit(job_read) for _ in range(3)]
        wait_until(lambda: _peaks(autotask_sim).get("Tickets") == 3, timeout=10)
        busy = flask_client.get(statuses, headers=api.token_header)
        for read in reads:
            read.result()

    assert busy.status_code == 429, busy.get_json()
    problem = busy.get_json()
    assert problem["code"] == "psa_budget_busy" and "in flight" in problem["detail"]
    assert int(busy.headers["Retry-After"]) >= 1

    def answered() -> TestResponse | None:  # once the leases end (twice the PSA timeout)
        response = flask_client.get(statuses, headers=api.token_header)
        assert response.status_code in (200, 429), response.get_json()
        return response if response.status_code == 200 else None

    later = wait_until(answered, timeout=15)
    assert {s["name"] for s in later.get_json()["statuses"]} >= {"New", "Complete"}
    assert _refused(autotask_sim) == []


def test_slots_in_redis_are_shared_and_a_dead_holders_slot_frees_when_its_lease_ends() -> None:
    client = redis.Redis.from_url(REDIS_URL)
    worker, api_process = RedisSlots(client), RedisSlots(client)
    key = f"writeback:slots:test:{uuid.uuid4().hex}"
    try:
        mine = worker.acquire(key, 3, lease=30)
        assert mine is not None and worker.acquire(key, 3, lease=30) is not None
        dying = api_process.acquire(key, 3, lease=1.0)  # its process is about to be killed
        assert dying is not None
        assert api_process.acquire(key, 3, lease=30) is None  # 3 held between the two
        worker.release(key, mine)
        assert api_process.acquire(key, 3, lease=30) is not None
        assert worker.acquire(key, 3, lease=30) is None
        time.sleep(1.1)  # the dead holder never releases: its lease ends
        assert worker.acquire(key, 3, lease=30) is not None
        assert 0 < client.pttl(key) <= 30_000  # idle keys expire
    finally:
        client.delete(key)
        client.close()


# --- people and a batch of the same PSA, on a deployment whose budget is the vendors' pace ---

RATE = 4.0  # requests per second per PSA: a batch of 6 spends it for several seconds
BATCH = 6


@pytest.fixture(scope="module")
def paced(
    broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[bootstrap.Container]:
    """A deployment of its own (database, queue, worker with beat), its budget at RATE."""
    database_url = create_database("wb_limits")
    queue = f"wb-limits-{uuid.uuid4().hex[:8]}"
    env = deployment_env(
        database_url,
        queue,
        tmp_path_factory.mktemp("limits-data"),
        WRITEBACK_PSA_RATE=str(RATE),
        WRITEBACK_PSA_TIMEOUT="5",
        WRITEBACK_WORKER_CONCURRENCY="4",  # the connection's admission slots: no more run
        CELERY_BROKER_URL=broker_url,
    )
    worker = celery_worker(env, tmp_path_factory.mktemp("limits-logs"), "paced", beat=True)
    # The API's side, its database connections capped as an API process caps them (wsgi.py).
    container = bootstrap.build(load_settings(env), db_connections=4)
    yield container
    worker.stop()
    container.close()
    redis.Redis.from_url(REDIS_URL).delete(queue)
    drop_database(database_url)


@pytest.fixture(scope="module")
def connectwise_sim() -> Iterator[Simulator]:
    """Its own, so that its budget in Redis (by site and company) is this module's alone."""
    with serve(connectwise.create_app()) as server:
        yield Simulator(server.url)


def test_a_person_is_answered_while_a_batch_of_the_same_psa_spends_its_budget(
    paced: bootstrap.Container, connectwise_sim: Simulator
) -> None:
    """The issue's scenario: a connection check, boards and statuses during a batch of the same
    PSA (ConnectWise here: each of these routes sends requests). Jobs leave a reserve of the
    budget for people, so one person is answered at once; eight checks at once wait briefly or
    are told when to come back (429 psa_budget_busy, Retry-After). Never a 5xx; the batch only
    waits."""
    app = create_app(paced)
    issued = paced.accounts.create_account(f"limits-{uuid.uuid4().hex[:6]}")
    api = Api(flask_sender(app.test_client(), issued.token), issued.token)
    simulator = connectwise_sim
    connection_id = api.connect_simulator(simulator.url)
    api.put("/account-settings", {"cw_resolved_status_id": 42}, expect=200)
    tickets = [simulator.new_ticket() for _ in range(BATCH)]
    jobs = [api.start(api.session(connection_id, ticket))["job_id"] for ticket in tickets]
    wait_until(lambda: _budget_waits(api, jobs), timeout=60)  # the batch has spent the budget
    base = f"/api/v1/psa-connections/{connection_id}"

    def ask(method: str, path: str) -> TestResponse:  # a client each: people ask at once
        return app.test_client().open(base + path, method=method, headers=api.token_header)

    person = [
        ask(method, path)
        for _ in range(2)
        for method, path in (("POST", "/test"), ("GET", "/boards"), ("GET", "/boards/1/statuses"))
    ]
    with ThreadPoolExecutor(8) as pool:
        crowd = list(pool.map(lambda _: ask("POST", "/test"), range(8)))
    finished = [api.wait_job(job_id, timeout=120) for job_id in jobs]

    assert [r.status_code for r in person] == [200] * 6, [r.get_json() for r in person]
    assert [r.get_json()["ok"] for r in person[::3]] == [True, True]
    for answer in crowd:
        assert answer.status_code in (200, 429), answer.get_json()
        if answer.status_code == 429:
            assert answer.get_json()["code"] == "psa_budget_busy"
            assert int(answer.headers["Retry-After"]) >= 1
        else:
            assert answer.get_json()["ok"] is True
    assert any(answer.status_code == 200 for answer in crowd)
    assert [(j["state"], j["attempts"]) for j in finished] == [("succeeded", 0)] * BATCH
    assert [len(simulator.ticket(t)["notes"]) for t in tickets] == [1] * BATCH


def _budget_waits(api: Api, jobs: list[str]) -> int:
    return sum(
        e["event"] == "budget_wait"
        for job_id in jobs
        for e in api.get(f"/jobs/{job_id}/events")["events"]
    )
