"""The PSA HTTP client's order around each request: admitted (budget, slot), then the caller's
`before_write` for writes only, then the send, then the slot given back. No I/O: the connection
attempt is the SSRF vetter's call, which refuses it before any socket is opened."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from writeback.adapters.psa.http import HttpClient
from writeback.domain.errors import PsaTransientError

URL = "https://psa.example/api/Tickets/1"


class LeaseLost(Exception):
    """What a caller's `before_write` raises (the lead's lease check, say)."""


class Wire:
    """Records, in order, what the client does around a request."""

    def __init__(self, refuse_writes: bool = False) -> None:
        self.log: list[str] = []
        self.refuse_writes = refuse_writes

    def admit(self, url: str) -> Callable[[], None]:
        self.log.append("admitted")
        return lambda: self.log.append("released")

    def before_write(self) -> None:
        self.log.append("before_write")
        if self.refuse_writes:
            raise LeaseLost("lease lost")

    def connect(self, host: str, port: int) -> str:
        self.log.append("sent")
        raise socket.gaierror("no network in unit tests")

    def observe(self, vendor: str, method: str, status: int | None) -> None:
        self.log.append(f"observed {vendor} {method}")

    def client(self) -> HttpClient:
        http = HttpClient(timeout=1, observer=self.observe).pinned(self.connect)
        return http.gated("halopsa", self.admit, self.before_write)


@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT", "DELETE", "post"])
def test_before_write_runs_after_admission_and_right_before_a_write_is_sent(method: str) -> None:
    wire = Wire()
    with pytest.raises(PsaTransientError):  # the connection was refused: nothing was sent
        wire.client().request(method, URL, json={})
    assert wire.log == [
        "admitted",
        "before_write",
        "sent",
        f"observed halopsa {method}",
        "released",
    ]


@pytest.mark.parametrize("method", ["GET", "HEAD", "get"])
def test_reads_are_sent_without_before_write(method: str) -> None:
    wire = Wire(refuse_writes=True)
    with pytest.raises(PsaTransientError):
        wire.client().request(method, URL)
    assert wire.log == ["admitted", "sent", f"observed halopsa {method}", "released"]


def test_a_before_write_that_raises_aborts_the_write_unsent_and_frees_its_slot() -> None:
    wire = Wire(refuse_writes=True)
    with pytest.raises(LeaseLost, match="lease lost"):  # unchanged, not a PSA error
        wire.client().request("POST", URL, json={"text": "note"})
    assert wire.log == ["admitted", "before_write", "released"]
