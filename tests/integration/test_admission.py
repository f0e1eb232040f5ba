"""A tenant's admission slots are a hard bound, however many of its posts arrive at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from tests.support import Api, Simulator, wait_until
from writeback import bootstrap
from writeback.adapters.db import tables

pytestmark = pytest.mark.integration


def test_concurrent_posts_of_one_tenant_never_take_more_than_its_slots(
    container: bootstrap.Container, gunicorn_api: tuple[str, Api], simulator: Simulator
) -> None:
    _, api = gunicorn_api
    connection = api.connect_simulator(simulator.url)
    sessions = []
    for _ in range(12):
        ticket = simulator.new_ticket()
        simulator.fault("slow", ticket, method="POST", delay=2.0)  # admitted jobs stay in flight
        sessions.append(api.session(connection, ticket))
    with ThreadPoolExecutor(len(sessions)) as pool:  # gunicorn serves them side by side
        jobs = list(pool.map(lambda session: api.start(session)["job_id"], sessions))

    jobs_t = tables.writeback_jobs
    slots, seen = container.settings.retry.tenant_slots, []

    def occupied() -> int:
        with container.engine.connect() as conn:
            count = conn.scalar(
                sa.select(sa.func.count()).where(jobs_t.c.id.in_(jobs), sa.text(tables.SENT))
            )
        seen.append(int(count or 0))
        return seen[-1]

    # A post that finds the tenant's admission taken leaves its job to the next sweep: the
    # slots fill within a few sweeps, and are never exceeded.
    wait_until(lambda: occupied() == slots, timeout=10, interval=0.05)
    assert max(seen) == slots, seen
    for job_id in jobs:  # held jobs are admitted as slots free up
        assert api.wait_job(job_id, timeout=60)["state"] == "succeeded"
