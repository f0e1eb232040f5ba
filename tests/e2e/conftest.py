"""End-to-end: the processes a deployment runs (gunicorn API, Celery worker and beat, the
simulator), started as commands and driven only over HTTP and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tests.support import (
    REDIS_URL,
    Api,
    Process,
    Simulator,
    celery_worker,
    compose_command,
    create_database,
    deployment_env,
    drop_database,
    free_port,
    wait_until,
)

pytestmark = pytest.mark.e2e

WRITEBACK = [sys.executable, "-m", "writeback"]
FLOWER_AUTH = "ops:flower-e2e-password"


def run_cli_text(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [*WRITEBACK, *args], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def run_cli(env: dict[str, str], *args: str) -> Any:
    """A CLI command whose stdout is one JSON object."""
    return json.loads(run_cli_text(env, *args))


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code < 500
    except requests.RequestException:
        return False


@pytest.fixture(scope="package")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-logs")


@pytest.fixture(scope="package")
def stack_env(
    broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    database_url = create_database("wb_e2e")
    queue = f"wb-e2e-{uuid.uuid4().hex[:8]}"
    env = deployment_env(
        database_url,
        queue,
        tmp_path_factory.mktemp("e2e-data"),
        WRITEBACK_PSA_TIMEOUT="2",
        WRITEBACK_RETRY_MAX_ATTEMPTS="3",
        # A lost step is noticed within seconds: beat sweeps every second.
        WRITEBACK_STEP_LEASE="5",
        WRITEBACK_SWEEP_INTERVAL="1",
        WRITEBACK_LOG_FORMAT="json",
        CELERY_BROKER_URL=broker_url,
    )
    yield env
    redis.Redis.from_url(REDIS_URL).delete(queue)
    drop_database(database_url)


@pytest.fixture
def private_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A deployment of its own (database, Redis queue) for tests that restart processes with
    other settings; what they check does not depend on the broker, so they run once."""
    database_url = create_database("wb_e2e_own")
    queue = f"wb-e2e-own-{uuid.uuid4().hex[:8]}"
    yield deployment_env(database_url, queue, tmp_path / "data", WRITEBACK_LOG_FORMAT="json")
    redis.Redis.from_url(REDIS_URL).delete(queue)
    drop_database(database_url)


@pytest.fixture(scope="package")
def simulator_process(logs: Path) -> Iterator[Simulator]:
    """One for the suite, whatever the broker: it needs none of the stack's settings."""
    port = free_port()
    process = Process(
        "simulator",
        [sys.executable, "-m", "writeback_simulators.connectwise", "--port", str(port)],
        dict(os.environ),
        logs,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _up(f"{url}/__sim/faults"), timeout=30)
    yield Simulator(url)
    process.stop()


class Stack:
    """The processes docker-compose.yml runs (API, worker, beat, Flower) with its commands, on
    loopback ports and one queue of their own."""

    def __init__(self, env: dict[str, str], logs: Path, name: str) -> None:
        port, flower_port = free_port(), free_port()
        self.env = {**env, "FLOWER_BASIC_AUTH": FLOWER_AUTH}
        self.url = f"http://127.0.0.1:{port}"
        self.flower_url = f"http://127.0.0.1:{flower_port}"
        api = compose_command("api", {"0.0.0.0:8000": f"127.0.0.1:{port}"})
        flower = compose_command("flower", {"0.0.0.0": "127.0.0.1", "5555": str(flower_port)})
        self.api = Process(f"{name}-api", api, self.env, logs)
        self.beat = Process(f"{name}-beat", compose_command("beat"), self.env, logs)
        self.flower = Process(f"{name}-flower", flower, self.env, logs)
        self.worker = celery_worker(self.env, logs, f"{name}-worker", wait=False)
        self._logs, self._name = logs, name
        self._lock, self._stopping, self.restarts = threading.Lock(), False, 0
        threading.Thread(target=self._supervise, name=f"{name}-restarts", daemon=True).start()
        try:
            self.worker.wait_for_log("ready.")
            wait_until(lambda: _up(f"{self.url}/readyz"), timeout=30)
            wait_until(lambda: _up(f"{self.flower_url}/healthcheck"), timeout=30)
        except AssertionError:  # in sessions of their own, they would outlive the run
            self.stop()
            raise

    def _supervise(self) -> None:
        """What `restart: unless-stopped` in docker-compose.yml does for the worker and beat: one
        that exits on its own is started again. (Celery exits on an unrecoverable consumer
        error, which kombu can raise when Redis goes away under it.)"""
        while not self._stopping:
            time.sleep(0.5)
            with self._lock:
                if self._stopping:
                    return
                if self.worker.exited:
                    self.worker.stop()
                    self.restarts += 1
                    name = f"{self._name}-worker-restart{self.restarts}"
                    self.worker = celery_worker(self.env, self._logs, name, wait=False)
                if self.beat.exited:
                    self.beat.stop()
                    self.restarts += 1
                    name = f"{self._name}-beat-restart{self.restarts}"
                    self.beat = Process(name, compose_command("beat"), self.env, self._logs)

    def replace_worker(self) -> None:
        """SIGKILL the worker (it dies without a word) and start a fresh one."""
        with self._lock:
            self.worker.kill()
            self.worker = celery_worker(self.env, self._logs, f"{self._name}-worker2")

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        for process in (self.worker, self.beat, self.flower, self.api):
            process.stop()


@pytest.fixture(scope="package")
def stack(stack_env: dict[str, str], logs: Path) -> Iterator[Stack]:
    running = Stack(stack_env, logs, "e2e")
    yield running
    running.stop()


@pytest.fixture(scope="package")
def api_url(stack: Stack) -> str:
    return stack.url


@pytest.fixture(scope="package")
def stack_worker(stack: Stack) -> Process:
    return stack.worker


def http_api(api_url: str, token: str) -> Api:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"

    def send(method: str, path: str, body: Any) -> tuple[int, Any]:
        response = session.request(method, f"{api_url}{path}", json=body, timeout=10)
        return response.status_code, response.json()

    return Api(send, token)


@pytest.fixture
def account(stack_env: dict[str, str]) -> dict[str, Any]:
    return run_cli(stack_env, "accounts", "create", f"e2e-{uuid.uuid4().hex[:6]}")  # type: ignore[no-any-return]


@pytest.fixture
def client(api_url: str, account: dict[str, Any], stack_worker: Process) -> Api:
    return http_api(api_url, account["token"])
