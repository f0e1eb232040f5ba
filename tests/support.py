"""Helpers for tests that run real servers and processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import requests
import sqlalchemy as sa
from cryptography.fernet import Fernet

from writeback.adapters.db import migrate

T = TypeVar("T")

PG_ADMIN_URL = os.environ.get(
    "WRITEBACK_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("WRITEBACK_TEST_REDIS", "redis://127.0.0.1:6379/3")


def deployment_env(database_url: str, queue: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a test deployment: its own database and queue, short backoffs."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": REDIS_URL,
        # As docker-compose.yml: the budget and the job feed in Redis whatever the broker.
        "WRITEBACK_REDIS_URL": REDIS_URL,
        "WRITEBACK_QUEUE": queue,
        "WRITEBACK_SECRET_KEYS": Fernet.generate_key().decode(),
        "WRITEBACK_DATA_DIR": str(data_dir),
        "WRITEBACK_PSA_ALLOW_PRIVATE_HOSTS": "1",
        # Short, bounded backoffs so retries happen within a test's patience.
        "WRITEBACK_VERIFY_BACKOFF": "0.05",
        "WRITEBACK_VERIFY_BACKOFF_MAX": "0.2",
        "WRITEBACK_RETRY_BACKOFF": "0.2",
        "WRITEBACK_RETRY_BACKOFF_MAX": "1",
        "WRITEBACK_POST_SETTLE": "2.5",
        # The budget has its own tests; here it must not throttle one shared simulator tenant.
        "WRITEBACK_PSA_RATE": "10000",
        **extra,
    }


def wait_until(check: Callable[[], T], timeout: float = 30.0, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_url() -> str:
    """A loopback URL nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


def empty_database(prefix: str, admin_url: str = PG_ADMIN_URL) -> str:
    """A new, empty database on the PostgreSQL server of `admin_url`: its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def create_database(prefix: str, admin_url: str = PG_ADMIN_URL) -> str:
    """A fresh PostgreSQL database, schema made by the real migrations."""
    url = empty_database(prefix, admin_url)
    migrate.upgrade(url)
    return url


def drop_database(url: str) -> None:
    name = sa.make_url(url).database
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


class Process:
    """A child process with its output in a log file, stopped politely then firmly."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        log_dir: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 60.0) -> None:
        def seen() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.log[-3000:]}")
            return text in self.log

        wait_until(seen, timeout, interval=0.1)

    @property
    def exited(self) -> bool:
        """It ended on its own: not stopped or killed from here."""
        return not self._log.closed and self.popen.poll() is not None

    def kill(self) -> None:
        """SIGKILL the whole process group: a worker dying without a word."""
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._log.close()

    def stop(self) -> None:
        if self._log.closed:
            return
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def celery_worker(
    env: dict[str, str],
    log_dir: Path,
    name: str = "worker",
    *,
    beat: bool = False,
    wait: bool = True,
) -> Process:
    """The worker as docker-compose.yml runs it, with a unique name and a quicker start; with
    `beat`, the scheduler's tick runs inside it (held waits and admission need it); with
    `wait`, once it is ready."""
    args = [
        *compose_command("worker"),
        *(["--beat"] if beat else []),
        "--without-gossip",
        "--without-mingle",
        "--hostname",
        f"{name}-{uuid.uuid4().hex[:6]}@%h",
    ]
    worker = Process(name, args, env, log_dir)
    if wait:
        worker.wait_for_log("ready.")
    return worker


class Simulator:
    """The simulator's control API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def new_ticket(self, status_id: int | None = None, board_id: int | None = None) -> str:
        body: dict[str, Any] = {}
        if board_id is not None:  # boards exist in ConnectWise only
            body["board_id"] = board_id
        if status_id is not None:
            body["status_id"] = status_id
        response = requests.post(f"{self.url}/__sim/tickets", json=body, timeout=5)
        response.raise_for_status()
        return str(response.json()["id"])

    def ticket(self, ticket_id: str) -> dict[str, Any]:
        response = requests.get(f"{self.url}/__sim/tickets/{ticket_id}", timeout=5)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def fault(self, kind: str, ticket_id: str | None = None, **params: Any) -> int:
        body = {"kind": kind, **params}
        if ticket_id is not None:
            body["ticket_id"] = int(ticket_id)
        response = requests.post(f"{self.url}/__sim/faults", json=body, timeout=5)
        response.raise_for_status()
        return int(response.json()["id"])

    def clear_fault(self, fault_id: int) -> None:
        requests.delete(f"{self.url}/__sim/faults/{fault_id}", timeout=5).raise_for_status()

    def clear_faults(self) -> None:
        requests.delete(f"{self.url}/__sim/faults", timeout=5).raise_for_status()

    def all_calls(self) -> list[dict[str, Any]]:
        return requests.get(f"{self.url}/__sim/requests", timeout=30).json()  # type: ignore[no-any-return]

    def calls(self, ticket_id: str) -> list[dict[str, Any]]:
        response = requests.get(
            f"{self.url}/__sim/requests", params={"ticket_id": ticket_id}, timeout=5
        )
        return response.json()  # type: ignore[no-any-return]


FINISHED = ("succeeded", "failed")


class Api:
    """The service's HTTP contract as tests use it: over real HTTP (e2e) or through Flask's
    test client (integration); `send` returns (status, parsed body)."""

    def __init__(self, send: Callable[[str, str, Any], tuple[int, Any]], token: str) -> None:
        self._send = send
        self.token_header = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, json: Any = None, expect: int | None = None) -> Any:
        status, body = self._send(method, f"/api/v1{path}", json)
        if expect is not None:
            assert status == expect, (method, path, status, body)
        return body

    def get(self, path: str, expect: int = 200) -> Any:
        return self.call("GET", path, expect=expect)

    def post(self, path: str, json: Any = None, expect: int | None = None) -> Any:
        return self.call("POST", path, json, expect)

    def put(self, path: str, json: Any = None, expect: int | None = None) -> Any:
        return self.call("PUT", path, json, expect)

    def connect_simulator(self, sim_url: str) -> int:
        connection = self.post(
            "/psa-connections",
            {
                "provider": "connectwise",
                "site_url": sim_url,
                "company_id": "ACME",
                "credentials": {
                    "public_key": "pub-key",
                    "private_key": "priv-key",
                    "client_id": "11111111-2222-3333-4444-555555555555",
                },
            },
            expect=201,
        )
        return int(connection["id"])

    def session(self, connection_id: int | None = None, ticket_id: str | None = None) -> int:
        body = {
            "session_type": "chat",
            "intake_type": "free_text",
            "intake_content": {"text": "Outlook prompts for a password every hour"},
            "conversation_messages": [
                {"role": "user", "content": "Started after the MFA rollout."},
                {"role": "assistant", "content": "Cleared the cached credentials."},
            ],
            "psa_connection_id": connection_id,
            "psa_ticket_id": ticket_id,
        }
        return int(self.post("/ai-sessions", body, expect=201)["id"])

    def start(
        self,
        session_id: int,
        kind: str = "resolve",
        markdown: str | None = "## Fix\nDone.",
        expect: int = 202,
    ) -> Any:
        document = "resolution-note" if kind == "resolve" else "escalation-package"
        body = {} if markdown is None else {"markdown": markdown}
        return self.post(f"/ai-sessions/{session_id}/{document}/post", body, expect=expect)

    def wait_job(
        self, job_id: str, timeout: float = 30.0, states: tuple[str, ...] = FINISHED
    ) -> dict[str, Any]:
        def settled() -> dict[str, Any] | None:
            job = self.get(f"/jobs/{job_id}")
            return job if job["state"] in states else None

        return wait_until(settled, timeout, interval=0.1)


COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


def compose_command(service: str, replace: dict[str, str] | None = None) -> list[str]:
    """The command docker-compose.yml gives `service`, runnable here: its program started from
    this virtualenv, container addresses and ports replaced (`replace` maps argument -> value)."""
    import yaml

    command = yaml.safe_load(COMPOSE_FILE.read_text())["services"][service]["command"]
    program, *args = command
    args = [(replace or {}).get(arg, arg) for arg in args]
    return [sys.executable, "-m", program, *args]
