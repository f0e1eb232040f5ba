"""The fault suite: the processes a deployment runs (gunicorn API, Celery worker and beat,
Flower), on a PRIVATE PostgreSQL and Redis that the tests stop and restart, driven only over
HTTP, the CLI, the simulator's control routes and signals. Nothing of ours is imported.

Stacks are shared; a scenario takes one through a fixture:
- `deployment`: the suite's stack, for scenarios that kill, pause or restart its processes or
  give the PSA faults, and leave the servers running;
- `own_deployment`: the stack of the scenario's module, on servers of the module's own
  (`own_pg`, `own_redis`), for scenarios that stop those servers;
- a scenario about other settings, or that needs a pristine stack, deploys its own with
  `deploy` (see test_worker_kill.py).
Before each scenario the shared stack is checked (every process running and not stopped,
/readyz ready) and replaced when the previous scenario left it otherwise, so a scenario that
breaks it fails alone; a scenario must give back what it paused or stopped (in a `finally`).
Under xdist (`make test`) the scenarios of one stack run in one worker, one after another
(`xdist_group`, set below from the fixtures a scenario uses), and stacks run side by side.
Settings are tight (documented WRITEBACK_* variables) except where a scenario is about the
defaults.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import Stack, http_api, run_cli
from tests.faults.deployment import bare_env, new_database, start_simulator
from tests.faults.outcomes import finished, jobs_off, notes_off
from tests.servers import PrivatePostgres, PrivateRedis
from tests.support import Api, Process, Simulator, wait_until

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


@pytest.fixture(scope="package")
def pg() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as server:
        yield server


@pytest.fixture(scope="package")
def broker() -> Iterator[PrivateRedis]:
    with PrivateRedis() as server:
        yield server


@pytest.fixture(scope="package")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """One ConnectWise simulator process for the suite; every scenario uses its own tickets."""
    process, simulator = start_simulator("connectwise", tmp_path_factory.mktemp("faults-sim"))
    yield simulator
    process.stop()


def _stopped(pid: int) -> bool:
    """Stopped by a signal (SIGSTOP): alive to `poll()`, yet doing nothing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


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

    @property
    def processes(self) -> list[Process]:
        return [self.stack.worker, self.stack.beat, self.stack.api, self.stack.flower]

    def unfit(self) -> list[str]:
        """Why the stack cannot take another scenario, if it cannot: a process gone or stopped,
        or an API that is not ready (database or broker unreachable)."""
        problems = [
            f"{p.name} {'stopped' if _stopped(p.popen.pid) else 'exited'}"
            for p in self.processes
            if p.popen.poll() is not None or _stopped(p.popen.pid)
        ]
        try:
            ready = requests.get(f"{self.stack.url}/readyz", timeout=5)
        except requests.RequestException as error:
            return [*problems, f"/readyz: {error}"]
        if ready.status_code != 200:
            problems.append(f"/readyz answered {ready.status_code}: {ready.text[:200]}")
        return problems

    def trouble(self) -> str:
        """The warnings and errors the stack's processes logged: what a failure report needs
        when the scenario ran on a machine whose logs are gone."""
        lines = [
            f"{p.name}: " + ("running" if p.popen.poll() is None else f"exited {p.popen.poll()}")
            for p in self.processes
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


class SharedStack:
    """One tight stack for the scenarios of a scope, started for the first and handed to each
    next one while it is fit. One left unfit (after a few seconds' grace: the supervisor
    restarts a worker that exited) is replaced, and the reason printed."""

    def __init__(
        self,
        pg: PrivatePostgres,
        broker: PrivateRedis,
        sim: Simulator,
        tmp_path_factory: pytest.TempPathFactory,
        name: str,
    ) -> None:
        self._servers, self._sim, self._tmp, self._name = (pg, broker), sim, tmp_path_factory, name
        self._current: Deployment | None = None

    def __enter__(self) -> SharedStack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop()

    def take(self) -> Deployment:
        current = self._current
        if current is not None:
            try:
                wait_until(lambda: not current.unfit(), timeout=15, interval=0.5)
            except AssertionError:
                print(f"the shared stack is replaced: {'; '.join(current.unfit())}")
                self._stop()
        if self._current is None:
            pg, broker = self._servers
            logs = self._tmp.mktemp(self._name)
            env = bare_env(new_database(pg.admin_url), broker.url, logs / "data", **TIGHT)
            self._current = deploy(env, self._sim, logs, self._name)
        return self._current

    def _stop(self) -> None:
        if self._current is not None:
            self._current.stack.stop()
            self._current = None


@pytest.fixture(scope="package")
def shared_stack(
    pg: PrivatePostgres,
    broker: PrivateRedis,
    sim: Simulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SharedStack]:
    with SharedStack(pg, broker, sim, tmp_path_factory, "faults") as shared:
        yield shared


@pytest.fixture
def deployment(shared_stack: SharedStack) -> Deployment:
    """The suite's shared stack, for scenarios that leave the servers running."""
    return shared_stack.take()


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of the module's own: stopping it disturbs no other module's stack."""
    with PrivatePostgres() as server:
        yield server


@pytest.fixture(scope="module")
def own_redis() -> Iterator[PrivateRedis]:
    with PrivateRedis() as server:
        yield server


@pytest.fixture(scope="module")
def own_shared_stack(
    own_pg: PrivatePostgres,
    own_redis: PrivateRedis,
    sim: Simulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SharedStack]:
    with SharedStack(own_pg, own_redis, sim, tmp_path_factory, "outage") as shared:
        yield shared


@pytest.fixture
def own_deployment(own_shared_stack: SharedStack) -> Deployment:
    """The module's stack on the module's own servers, for scenarios that stop them."""
    return own_shared_stack.take()


def pytest_itemcollected(item: pytest.Item) -> None:
    """The xdist group of a scenario (see tests/conftest.py): one per shared stack. Scenarios
    on stacks of their own have none: they run wherever a worker is free."""
    fixtures = getattr(item, "fixturenames", ())
    if {"own_pg", "own_redis"} & set(fixtures):
        item.add_marker(pytest.mark.xdist_group(f"faults-{item.path.stem}"))
    elif "deployment" in fixtures:
        item.add_marker(pytest.mark.xdist_group("faults"))


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
