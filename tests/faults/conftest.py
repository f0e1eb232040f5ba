"""The fault suite: the processes a deployment runs (gunicorn API, Celery worker and beat,
Flower), on a PRIVATE PostgreSQL and Redis that the tests stop and restart, driven only over
HTTP, the CLI, the simulator's control routes and signals. Nothing of ours is imported.

Scenarios that leave the processes as they found them share one stack (`deployment`); those
that stop a server get a stack of their own on servers of their own (`own_deployment`), so a
stack they leave broken cannot fail another scenario for the wrong reason. Settings are tight
(documented WRITEBACK_* variables) except where a scenario is about the defaults.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Stack, http_api, run_cli
from tests.faults.deployment import bare_env, new_database, start_simulator
from tests.faults.outcomes import finished, jobs_off, notes_off
from tests.servers import PrivatePostgres, PrivateRedis
from tests.support import Api, Simulator

# What a process's log says when something went wrong (JSON levels and Celery's own banners).
TROUBLE = ('"WARNING"', '"ERROR"', '"CRITICAL"', "Traceback", "Unrecoverable", "exited")

# Not about defaults: quick timeouts, a sweep every second, a lease a step fits in with room.
TIGHT = {
    "WRITEBACK_PSA_TIMEOUT": "2",
    "WRITEBACK_POST_SETTLE": "5",  # long enough that a 429 wrongly waiting it is visible
    "WRITEBACK_RETRY_BACKOFF": "0.2",
    "WRITEBACK_RETRY_BACKOFF_MAX": "1",
    "WRITEBACK_VERIFY_BACKOFF": "0.05",
    "WRITEBACK_VERIFY_BACKOFF_MAX": "0.2",
    "WRITEBACK_STEP_LEASE": "20",
    "WRITEBACK_SWEEP_INTERVAL": "1",
    "WRITEBACK_PSA_RATE": "10000",  # one simulator tenant is shared by every scenario
}


@pytest.fixture(scope="session")
def pg() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as server:
        yield server


@pytest.fixture(scope="session")
def broker() -> Iterator[PrivateRedis]:
    with PrivateRedis() as server:
        yield server


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """One ConnectWise simulator process for the suite; every scenario uses its own tickets."""
    process, simulator = start_simulator("connectwise", tmp_path_factory.mktemp("faults-sim"))
    yield simulator
    process.stop()


@dataclass
class Deployment:
    """A running stack with one account, its ConnectWise connection (statuses 42/43) and the
    simulator it talks to."""

    stack: Stack
    sim: Simulator
    client: Api
    connection_id: int
    logs: Path

    def ticket_session(self) -> tuple[str, int]:
        ticket = self.sim.new_ticket()
        return ticket, self.client.session(self.connection_id, ticket)

    def settled(self, jobs: list[str], timeout: float) -> list[dict[str, Any]]:
        """The jobs once all finished, or as they stand after `timeout` seconds."""
        return finished(self.client, jobs, time.monotonic() + timeout)

    def wait_job(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        try:
            return self.client.wait_job(job_id, timeout=timeout)
        except AssertionError:
            job = self.client.get(f"/jobs/{job_id}")
            raise AssertionError(
                f"job {job_id} not finished within {timeout} s: state {job['state']}, "
                f"step {job['step']}, attempts {job['attempts']}, error {job['error']}\n"
                + self.trouble()
            ) from None

    def trouble(self) -> str:
        """The warnings and errors the stack's processes logged: what a failure report needs
        when the scenario ran on a machine whose logs are gone."""
        processes = [self.stack.worker, self.stack.beat, self.stack.api, self.stack.flower]
        lines = [
            f"{p.name}: " + ("running" if p.popen.poll() is None else f"exited {p.popen.poll()}")
            for p in processes
        ]
        for path in sorted(self.logs.glob("*.log")):
            noted = [
                line[:400]
                for line in path.read_text(errors="replace").splitlines()
                if any(mark in line for mark in TROUBLE)
            ]
            lines += [f"--- {path.name}: {len(noted)} lines", *noted[-15:]]
        return "\n".join(lines)


def deploy(env: dict[str, str], sim: Simulator, logs: Path, name: str) -> Deployment:
    stack = Stack(env, logs, name)
    account = run_cli(stack.env, "accounts", "create", f"{name}-{uuid.uuid4().hex[:6]}")
    client = http_api(stack.url, account["token"])
    client.put(
        "/account-settings", {"cw_resolved_status_id": 42, "cw_escalated_status_id": 43}, expect=200
    )
    return Deployment(stack, sim, client, client.connect_simulator(sim.url), logs)


@contextmanager
def tight_deployment(
    pg: PrivatePostgres, broker: PrivateRedis, sim: Simulator, logs: Path, name: str
) -> Iterator[Deployment]:
    """A tight-settings stack with its own database and queue on the private servers."""
    env = bare_env(new_database(pg.admin_url), broker.url, logs / "data", **TIGHT)
    running = deploy(env, sim, logs, name)
    try:
        yield running
    finally:
        running.stack.stop()


@pytest.fixture(scope="session")
def deployment(
    pg: PrivatePostgres,
    broker: PrivateRedis,
    sim: Simulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    """The suite's shared stack, for scenarios that leave its processes as they found them."""
    with tight_deployment(pg, broker, sim, tmp_path_factory.mktemp("faults"), "faults") as d:
        yield d


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of the module's own: stopping it disturbs no other module's stack."""
    with PrivatePostgres() as server:
        yield server


@pytest.fixture(scope="module")
def own_redis() -> Iterator[PrivateRedis]:
    with PrivateRedis() as server:
        yield server


@pytest.fixture
def own_deployment(
    own_pg: PrivatePostgres,
    own_redis: PrivateRedis,
    sim: Simulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    """A stack of the test's own on servers of the module's own, for scenarios that stop them:
    a stack they leave broken fails no other scenario."""
    logs = tmp_path_factory.mktemp("outage")
    with tight_deployment(own_pg, own_redis, sim, logs, "outage") as d:
        yield d


def assert_one_note_each(sim: Simulator, tickets: list[str]) -> None:
    problems = notes_off(sim, tickets)
    assert not problems, "; ".join(problems)


def assert_all_succeeded(jobs: list[dict[str, Any]]) -> None:
    problems = jobs_off(jobs)
    assert not problems, "; ".join(problems)


def watch(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> float | None:
    """Seconds until `check()` holds, or None if it did not within `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(interval)
    return None
