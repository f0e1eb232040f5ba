"""Integration tests: real PostgreSQL, real Redis, a real Celery worker process and the
ConnectWise simulator over HTTP. The API runs in-process through Flask's test client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask.testing import FlaskClient

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
from writeback import bootstrap
from writeback.api import create_app
from writeback.config import load_settings
from writeback_simulators import anthropic as anthropic_stub
from writeback_simulators import connectwise
from writeback_simulators.server import serve

pytestmark = pytest.mark.integration


@pytest.fixture(scope="package")
def database_url() -> Iterator[str]:
    url = create_database("wb_it")
    yield url
    drop_database(url)


@pytest.fixture(scope="package")
def simulator() -> Iterator[Simulator]:
    with serve(connectwise.create_app()) as server:
        yield Simulator(server.url)


@pytest.fixture(scope="package")
def llm() -> Iterator[str]:
    """The Messages API stub: drafts in these tests come from the model path."""
    with serve(anthropic_stub.create_app()) as server:
        yield server.url


@pytest.fixture(scope="package")
def service_env(
    database_url: str, llm: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    queue = f"wb-it-{uuid.uuid4().hex[:8]}"
    env = deployment_env(
        database_url,
        queue,
        tmp_path_factory.mktemp("data"),
        WRITEBACK_PSA_TIMEOUT="2",
        WRITEBACK_VERIFY_ATTEMPTS="3",
        WRITEBACK_RETRY_MAX_ATTEMPTS="4",
        WRITEBACK_WORKER_CONCURRENCY="8",
        ANTHROPIC_API_KEY="test-key",
        ANTHROPIC_BASE_URL=llm,
        CELERY_BROKER_URL=broker_url,
    )
    yield env
    redis.Redis.from_url(REDIS_URL).delete(queue)


@pytest.fixture(scope="package")
def worker(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Process]:
    process = celery_worker(service_env, tmp_path_factory.mktemp("logs"), beat=True)
    yield process
    process.stop()


@pytest.fixture(scope="package")
def container(service_env: dict[str, str]) -> Iterator[bootstrap.Container]:
    built = bootstrap.build(load_settings(service_env))
    yield built
    built.close()


def flask_sender(client: FlaskClient, token: str) -> Any:
    def send(method: str, path: str, body: Any) -> tuple[int, Any]:
        response = client.open(
            path, method=method, json=body, headers={"Authorization": f"Bearer {token}"}
        )
        return response.status_code, response.get_json()

    return send


@pytest.fixture(scope="package")
def flask_client(container: bootstrap.Container) -> FlaskClient:
    return create_app(container).test_client()


def new_api(container: bootstrap.Container, client: FlaskClient) -> Api:
    issued = container.accounts.create_account(f"it-{uuid.uuid4().hex[:6]}")
    return Api(flask_sender(client, issued.token), issued.token)


@pytest.fixture
def api(container: bootstrap.Container, flask_client: FlaskClient, worker: Process) -> Api:
    """A fresh account (so tests never share state) with a running worker behind it."""
    return new_api(container, flask_client)


@pytest.fixture
def other_api(container: bootstrap.Container, flask_client: FlaskClient) -> Api:
    return new_api(container, flask_client)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path


def http_sender(base_url: str, token: str) -> Any:
    def send(method: str, path: str, body: Any) -> tuple[int, Any]:
        response = requests.request(
            method, base_url + path, json=body, headers={"Authorization": f"Bearer {token}"}
        )
        return response.status_code, response.json() if response.content else None

    return send


@pytest.fixture(scope="package")
def gunicorn_url(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The API as docker-compose.yml runs it (gunicorn, its worker class), on a free port."""
    port = free_port()
    process = Process(
        "gunicorn",
        compose_command("api", {"0.0.0.0:8000": f"127.0.0.1:{port}"}),
        service_env,
        tmp_path_factory.mktemp("gunicorn"),
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(url), timeout=30)
    yield url
    process.stop()


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def gunicorn_api(
    container: bootstrap.Container, gunicorn_url: str, worker: Process
) -> tuple[str, Api]:
    issued = container.accounts.create_account(f"it-{uuid.uuid4().hex[:6]}")
    return gunicorn_url, Api(http_sender(gunicorn_url, issued.token), issued.token)
