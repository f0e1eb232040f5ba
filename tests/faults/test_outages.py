"""Our own servers going away: Redis (the broker and the request budget) and PostgreSQL stopped
and restarted under a running stack. The API answers 503 while the database is down, a post
made while the broker is down is accepted and delivered later, and every job in flight
finishes with exactly one note."""

from __future__ import annotations

import time

import pytest
import requests

from tests.faults.conftest import Deployment, assert_all_succeeded, assert_one_note_each
from tests.faults.outcomes import jobs_off, notes_off
from tests.servers import PrivatePostgres, PrivateRedis
from tests.support import wait_until

pytestmark = pytest.mark.faults


def _start_jobs(d: Deployment, count: int) -> tuple[list[str], list[str]]:
    """`count` resolves whose note POST takes 1 s, so they are in flight for a while."""
    tickets, jobs = [], []
    for _ in range(count):
        ticket, session = d.ticket_session()
        d.sim.fault("slow", ticket, method="POST", delay=1.0)
        tickets.append(ticket)
        jobs.append(d.client.start(session)["job_id"])
    return tickets, jobs


def _some_running(d: Deployment, tickets: list[str], at_least: int) -> None:
    wait_until(lambda: sum(bool(d.sim.calls(t)) for t in tickets) >= at_least, timeout=60)


def test_a_post_while_the_broker_is_down_is_accepted_and_delivered_once_it_is_back(
    own_deployment: Deployment, own_redis: PrivateRedis
) -> None:
    d = own_deployment
    ticket, session = d.ticket_session()
    url = f"{d.stack.url}/api/v1/ai-sessions/{session}/resolution-note/post"
    own_redis.stop()
    try:
        started = time.monotonic()
        response = requests.post(url, json={}, headers=d.client.token_header, timeout=30)
        took = time.monotonic() - started
    finally:
        own_redis.start()
    assert response.status_code == 202, (
        f"a post with the broker down answered {response.status_code}: {response.text}"
    )
    assert took < 10, f"a post with the broker down took {took:.1f} s to answer"
    assert_all_succeeded([d.wait_job(response.json()["job_id"], timeout=60)])
    assert_one_note_each(d.sim, [ticket])


def test_a_redis_restart_with_30_jobs_in_flight_loses_and_duplicates_none(
    own_deployment: Deployment, own_redis: PrivateRedis
) -> None:
    d = own_deployment
    tickets, jobs = _start_jobs(d, 30)
    _some_running(d, tickets, at_least=3)
    own_redis.stop()
    time.sleep(3)
    own_redis.start()

    problems = jobs_off(d.settled(jobs, timeout=120)) + notes_off(d.sim, tickets)
    assert not problems, "after a Redis restart: " + "; ".join(problems) + "\n" + d.trouble()


def _outage_answer(d: Deployment, method: str, path: str, job_id: str = "") -> str | None:
    """What is wrong with the API's answer to `method path` while the database is down, if
    anything: it must be a 503 problem+json with Retry-After, or, for a job poll, the job as its
    worker last published it (polling needs no database)."""
    response = requests.request(
        method, f"{d.stack.url}/api/v1{path}", json={}, headers=d.client.token_header, timeout=30
    )
    kind = response.headers.get("Content-Type", "")
    if job_id and response.status_code == 200 and response.json().get("id") == job_id:
        return None
    if response.status_code == 503 and kind.startswith("application/problem+json"):
        return None if response.headers.get("Retry-After") else f"{method} {path}: no Retry-After"
    return f"{method} {path}: {response.status_code} {kind} {response.text[:200]}"


def test_a_postgres_restart_with_jobs_in_flight_answers_503_and_loses_nothing(
    own_deployment: Deployment, own_pg: PrivatePostgres
) -> None:
    d = own_deployment
    tickets, jobs = _start_jobs(d, 10)
    waiting_ticket, waiting_session = d.ticket_session()  # posted during the outage
    _some_running(d, tickets, at_least=2)
    own_pg.stop()
    try:
        answers = [
            _outage_answer(d, "GET", f"/jobs/{jobs[0]}", job_id=jobs[0]),
            _outage_answer(d, "GET", "/jobs?limit=5"),
            _outage_answer(d, "GET", f"/ai-sessions/{waiting_session}"),
            _outage_answer(d, "POST", f"/ai-sessions/{waiting_session}/resolution-note/post"),
        ]
        time.sleep(2)
    finally:
        own_pg.start()
    problems = [f"while PostgreSQL was down, {a}" for a in answers if a]

    late = d.client.start(waiting_session)["job_id"]  # the outage is over: accepted now
    problems += jobs_off(d.settled([*jobs, late], timeout=120))
    problems += notes_off(d.sim, [*tickets, waiting_ticket])
    assert not problems, "; ".join(problems) + "\n" + d.trouble()
