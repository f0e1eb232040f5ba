"""End-to-end: the processes a deployment runs (gunicorn API, Celery worker and beat, the
simulator), started as commands and driven only over HTTP and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
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
    create_database,
    deployment_env,
    drop_database,
    free_port,
    wait_until,
)

pytestmark = pytest.mark.e2e

WRITEBACK = [sys.executable, "-m", "writeback"]


def run_cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [*WRITEBACK, *args], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(done.stdout)


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code < 500
    except requests.ConnectionError:
        return False


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-logs")


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    database_url = create_database("wb_e2e")
    queue = f"wb-e2e-{uuid.uuid4().hex[:8]}"
    env = deployment_env(database_url, queue, tmp_path_factory.mktemp("e2e-data"))
    yield env
    redis.Redis.from_url(REDIS_URL).delete(queue)
    drop_database(database_url)


@pytest.fixture(scope="session")
def simulator_process(stack_env: dict[str, str], logs: Path) -> Iterator[Simulator]:
    port = free_port()
    process = Process(
        "simulator",
        [sys.executable, "-m", "writeback.simulators.connectwise", "--port", str(port)],
        stack_env,
        logs,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _up(f"{url}/__sim/faults"), timeout=30)
    yield Simulator(url)
    process.stop()


@pytest.fixture(scope="session")
def api_url(stack_env: dict[str, str], logs: Path) -> Iterator[str]:
    port = free_port()
    process = Process(
        "api",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "4",
            "writeback.wsgi:app",
        ],
        stack_env,
        logs,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _up(f"{url}/healthz"), timeout=30)
    yield url
    process.stop()


@pytest.fixture(scope="session")
def stack_worker(stack_env: dict[str, str], logs: Path) -> Iterator[Process]:
    process = celery_worker(stack_env, logs, "e2e-worker")
    yield process
    process.stop()


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
