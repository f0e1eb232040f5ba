"""What the simulator tests share: HTTP clients of the control API (/__sim/...), the fixtures that
serve one simulator per test module, the fault specs every PSA simulator refuses, and the checks
of a dropped connection and of the `python -m` entry points."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import requests

from writeback_simulators.server import RunningServer, serve

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

# Fault specs the PSA simulators refuse with a 400 (the validation is faults.py's, shared).
INVALID_FAULT_SPECS: list[dict[str, Any]] = [
    {"kind": "explode"},
    {"kind": "slow", "delay": "soon"},
    {"kind": "slow", "delay": 61},
    {"kind": "slow", "retry_after": 1},
    {"kind": "server_error", "status": 418},
    {"kind": "rate_limit", "retry_after": 1.5},
    {"kind": "rate_limit", "times": 0},
    {"kind": "rate_limit", "ticketId": 5},
    {"kind": "rate_limit", "method": "BREW"},
    {"kind": "rate_limit", "ticket_id": True},
]


class SimClient:
    """A requests session against a simulator; control calls need no credentials."""

    def __init__(self, url: str, session: requests.Session) -> None:
        self.url = url
        self.session = session

    def control(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, f"{self.url}/__sim/{path}", timeout=5, **kwargs)

    def created(self, path: str, **spec: Any) -> int:
        """POST `spec` to a control collection, expecting 201; the new record's id."""
        response = self.control("POST", path, json=spec)
        assert response.status_code == 201, response.text
        record_id: int = response.json()["id"]
        return record_id

    def fault(self, **spec: Any) -> int:
        return self.created("faults", **spec)


class PsaSimClient(SimClient):
    """A PSA simulator's client: control calls for tickets too."""

    def new_ticket(self, **fields: Any) -> int:
        return self.created("tickets", **fields)

    def stored(self, ticket_id: int) -> dict[str, Any]:
        """The ticket as stored, with its notes (whatever the vendor calls answered)."""
        response = self.control("GET", f"tickets/{ticket_id}")
        assert response.status_code == 200, response.text
        ticket: dict[str, Any] = response.json()
        return ticket


ClientT = TypeVar("ClientT", bound=SimClient)


def simulator_fixtures(
    create_app: Callable[[], WSGIApplication], client: type[ClientT]
) -> tuple[Any, Any]:
    """A test module's fixtures, named by what it assigns them to: a server (one per module, as
    starting one per test is slow) and a `client` of it, reset before each test.

    `server, sim = simulator_fixtures(create_app, Sim)`
    """

    @pytest.fixture(scope="module")
    def server() -> Iterator[RunningServer]:
        with serve(create_app()) as running:
            yield running

    @pytest.fixture
    def sim(server: RunningServer) -> Iterator[ClientT]:
        with requests.Session() as session:
            helper = client(server.url, session)
            assert helper.control("POST", "reset").status_code == 204
            yield helper

    return server, sim


@contextmanager
def connection_dropped() -> Iterator[None]:
    """Expect the vendor call inside to get no answer (a `drop_after_store` fault), then wait for
    the server's handler thread to finish the dropped request."""
    before = set(threading.enumerate())
    with pytest.raises(requests.ConnectionError):
        yield
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=2)


def simulator_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The warnings caplog holds, but for the product's own (`writeback.*`): a container an
    earlier test of this worker process built keeps its near cache's Redis listener thread,
    which warns into every later test once its Redis is stopped."""
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and not r.name.startswith("writeback.")
    ]


def run_module(module: str, call: Callable[[str], requests.Response]) -> tuple[str, Any]:
    """Run `python -m <module> --port 0` and make `call` to the URL it announces on stdout.

    Returns the URL and the JSON answer.
    """
    command = [sys.executable, "-m", module, "--port", "0"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().split()[-1]
            response = call(url)
        finally:
            process.terminate()
            process.wait(timeout=5)
    return url, response.json()
