"""Failures that are partial: a worker frozen (SIGSTOP) past its lease with its POST still to
send, a session's ticket changed while its job writes, a saturated worker killed, a backlog
that would starve a queued sweep, and Redis away for two minutes in the middle of a batch."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from celery import Celery

from tests.brokers import private_broker, selected_brokers
from tests.faults.conftest import (
    TIGHT,
    Deployment,
    assert_all_succeeded,
    assert_one_note_each,
    deploy,
)
from tests.faults.deployment import bare_env, new_database
from tests.faults.outcomes import jobs_off, notes_off
from tests.servers import PrivatePostgres, PrivateRedis
from tests.support import Process, Simulator, celery_worker, wait_until

pytestmark = pytest.mark.faults

RECOVERY_TARGET = 60.0  # the project's own: a killed worker's jobs finish within a minute


def _running_at(d: Deployment, job_id: str, step: str) -> bool:
    job = d.client.get(f"/jobs/{job_id}")
    return bool(job["state"] == "running" and job["step"] == step)


@contextmanager
def _frozen(process: Process) -> Iterator[None]:
    os.kill(process.popen.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(process.popen.pid, signal.SIGCONT)


def test_a_worker_frozen_past_its_lease_before_its_post_sends_no_second_note(
    deployment: Deployment,
) -> None:
    """Its lease runs out, a second worker takes the job over and posts; when the first one
    wakes up, its write is refused by the fence: one note."""
    d = deployment
    ticket, session = d.ticket_session()
    d.sim.fault("slow", ticket, method="GET", delay=1.5)  # post_note first reads the ticket
    job_id = d.client.start(session)["job_id"]
    wait_until(lambda: _running_at(d, job_id, "post_note"), timeout=30, interval=0.05)
    first = d.stack.worker
    second: Process | None = None
    try:
        with _frozen(first):
            second = celery_worker(d.stack.env, d.logs, f"second-{uuid.uuid4().hex[:6]}")
            assert_all_succeeded([d.wait_job(job_id, timeout=90)])  # taken over, posted once
        # The first worker wakes up mid-step: its fence refuses the POST, its result is dropped.
        wait_until(lambda: "result dropped" in first.log, timeout=30)
        time.sleep(1)
        assert_one_note_each(d.sim, [ticket])
    finally:
        if second is not None:
            second.stop()


def test_a_sessions_ticket_cannot_change_under_its_job_writing_to_it(
    deployment: Deployment,
) -> None:
    d = deployment
    ticket, session = d.ticket_session()
    other = d.sim.new_ticket()
    d.sim.fault("slow", ticket, method="POST", delay=1.5)
    job_id = d.client.start(session)["job_id"]
    wait_until(lambda: _running_at(d, job_id, "post_note"), timeout=30, interval=0.05)

    refused = d.client.call("PATCH", f"/ai-sessions/{session}", {"psa_ticket_id": other})
    assert refused.get("code") == "job_in_flight" and refused.get("job_id") == job_id, refused

    done = d.wait_job(job_id)
    assert_all_succeeded([done])
    assert (d.sim.ticket(ticket)["status"]["id"], done["verified_status_id"]) == (42, 42)
    assert_one_note_each(d.sim, [ticket])
    assert d.sim.ticket(other)["notes"] == [] and d.sim.ticket(other)["status"]["id"] != 42


@pytest.fixture(params=selected_brokers())
def own_broker_url(request: pytest.FixtureRequest, broker: PrivateRedis) -> Iterator[str]:
    """The broker of a deployment of the test's own: the private Redis, or a private vhost on
    the machine's RabbitMQ (with the private Redis for the budget and the job feed)."""
    if request.param == "redis":
        yield broker.url
        return
    with private_broker("amqp") as url:
        yield url


def test_a_saturated_worker_killed_on_the_shipped_settings_has_every_job_done_within_60_s(
    pg: PrivatePostgres,
    broker: PrivateRedis,
    own_broker_url: str,
    sim: Simulator,
    tmp_path: Path,
) -> None:
    """16 steps running (each held reading its ticket) and more waiting in the broker when the
    worker is SIGKILLed; every WRITEBACK_* timing at its default, but the PSA's rate (one
    simulator tenant for everything: the budget is not what this is about)."""
    env = bare_env(
        new_database(pg.admin_url),
        own_broker_url,
        tmp_path / "data",
        WRITEBACK_REDIS_URL=broker.url,
        WRITEBACK_PSA_RATE="10000",
    )
    d = deploy(env, sim, tmp_path, "saturated")
    try:
        connections = [d.connection_id] + [d.client.connect_simulator(sim.url) for _ in range(5)]
        tickets, jobs = [], []
        for connection in connections:  # 6 tenants x 4 slots: 24 messages out, 16 threads
            for _ in range(4):
                ticket = sim.new_ticket()
                sim.fault("slow", ticket, method="GET", delay=20.0)
                tickets.append(ticket)
                jobs.append(d.client.start(d.client.session(connection, ticket))["job_id"])
        running = lambda: sum(_running_at(d, j, "post_note") for j in jobs)  # noqa: E731
        wait_until(lambda: running() >= 16, timeout=60, interval=0.2)
        killed = time.monotonic()
        d.stack.replace_worker()

        states = d.settled(jobs, timeout=RECOVERY_TARGET)
        took = time.monotonic() - killed
        problems = jobs_off(states) + notes_off(sim, tickets)
        assert not problems, f"{took:.0f} s after the SIGKILL: " + "; ".join(problems)
        print(f"every job done {took:.1f} s after the SIGKILL of a saturated worker")
    finally:
        d.stack.stop()


def _publish_backlog(env: dict[str, str], count: int) -> None:
    """`count` step messages of other tenants, as our producer sends them."""
    producer = Celery("backlog-producer", broker=env["CELERY_BROKER_URL"])
    try:
        with producer.connection_for_write() as conn:
            for _ in range(count):
                producer.send_task(
                    "writeback.draft",
                    args=[str(uuid.uuid4())],
                    queue=env["WRITEBACK_QUEUE"],
                    connection=conn,
                )
    finally:
        producer.close()


def test_a_held_job_is_admitted_on_time_behind_a_backlog_of_2000_steps(
    pg: PrivatePostgres, broker: PrivateRedis, sim: Simulator, tmp_path: Path
) -> None:
    """Every worker thread is busy and 2,000 step messages of other tenants wait in the queue
    when another tenant's held job becomes due: the sweep, in beat, admits it within two
    sweep intervals (a sweep sent through the step queue would wait behind them all)."""
    database = new_database(pg.admin_url)
    # Tight, but for a PSA timeout the busy tenant's slow reads fit in, and its 16 slots.
    settings = {**TIGHT, "WRITEBACK_PSA_TIMEOUT": "90", "WRITEBACK_TENANT_SLOTS": "16"}
    env = bare_env(database, broker.url, tmp_path / "data", **settings)
    d = deploy(env, sim, tmp_path, "backlog")
    engine = sa.create_engine(database)
    try:
        ticket, session = d.ticket_session()
        sim.fault("rate_limit", ticket, retry_after=30)  # held for 30 s by the PSA's word
        held = d.client.start(session)["job_id"]
        wait_until(lambda: d.client.get(f"/jobs/{held}")["state"] == "retrying", timeout=30)

        busy = d.client.connect_simulator(sim.url)  # another tenant keeps every thread busy
        for _ in range(16):
            slow = sim.new_ticket()
            sim.fault("slow", slow, method="GET", delay=60.0)
            d.client.start(d.client.session(busy, slow))
        _publish_backlog(d.stack.env, 2000)

        query = sa.text("SELECT message_id, updated_at FROM writeback_jobs WHERE id = :id")

        def admitted() -> sa.Row[tuple[object, ...]] | None:
            with engine.connect() as conn:
                row = conn.execute(query, {"id": held}).one()
            return row if row.message_id is not None else None

        row = wait_until(admitted, timeout=60, interval=0.1)
        queued = redis.Redis.from_url(broker.url).llen(env["WRITEBACK_QUEUE"])
        assert queued >= 1000, f"scenario: only {queued} steps were still queued"
        [wait] = [
            e
            for e in d.client.get(f"/jobs/{held}/events")["events"]
            if e["event"] == "retry_scheduled"
        ]
        due = datetime.fromisoformat(wait["at"]) + timedelta(seconds=wait["detail"]["delay"])
        late = row.updated_at - due
        interval = float(TIGHT["WRITEBACK_SWEEP_INTERVAL"])
        print(f"admitted {late.total_seconds():.2f} s after it was due, behind 2,000 steps")
        assert late <= timedelta(seconds=2 * interval + 0.5), f"admitted {late} after due"
    finally:
        engine.dispose()
        d.stack.stop()


def test_redis_away_for_two_minutes_mid_batch_counts_no_attempt(
    pg: PrivatePostgres, own_broker_url: str, sim: Simulator, tmp_path: Path
) -> None:
    """The request budget (and, on the Redis broker, the broker) goes away for two minutes
    while ten jobs run: they wait for it and finish, and no attempt is counted for it."""
    with PrivateRedis() as redis_server:
        url = redis_server.url if own_broker_url.startswith("redis") else own_broker_url
        env = bare_env(
            new_database(pg.admin_url),
            url,
            tmp_path / "data",
            **TIGHT,
            WRITEBACK_REDIS_URL=redis_server.url,
        )
        d = deploy(env, sim, tmp_path, "redis-away")
        try:
            tickets, jobs = [], []
            for _ in range(10):
                ticket, session = d.ticket_session()
                sim.fault("slow", ticket, method="POST", delay=1.0)
                tickets.append(ticket)
                jobs.append(d.client.start(session)["job_id"])
            wait_until(lambda: sum(bool(sim.calls(t)) for t in tickets) >= 3, timeout=60)
            redis_server.stop()
            time.sleep(120)
            redis_server.start()

            problems = jobs_off(d.settled(jobs, timeout=120)) + notes_off(sim, tickets)
            counted = [
                f"{job_id}: {event['detail'].get('code')}"
                for job_id in jobs
                for event in d.client.get(f"/jobs/{job_id}/events")["events"]
                if event["event"] == "retry_scheduled"
            ]
            assert not problems and not counted, (
                f"after Redis was away: {problems}; attempts counted: {counted}\n" + d.trouble()
            )
        finally:
            d.stack.stop()
