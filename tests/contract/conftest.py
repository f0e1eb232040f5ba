"""Harnesses for the provider contract: one per PsaProvider implementation, each creating
tickets and injecting faults its own way (in memory, or through a simulator's control API)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import pytest
import requests

from tests.contract.cw_openapi import RecordingHttp, check_exchange
from tests.fakes import FakePsaProvider
from writeback.adapters.psa.autotask import AutotaskCache, AutotaskProvider
from writeback.adapters.psa.connectwise import CodebaseCache, ConnectWiseProvider
from writeback.adapters.psa.halopsa import HaloCache, HaloProvider
from writeback.adapters.psa.http import HttpClient
from writeback.domain.errors import PsaTransientError
from writeback.domain.model import NoteType
from writeback.domain.ports import PsaProvider
from writeback.domain.site_url import HostPolicy, check_site_url
from writeback_simulators import autotask as at_sim
from writeback_simulators import connectwise as cw_sim
from writeback_simulators import halopsa as halo_sim
from writeback_simulators.server import RunningServer, serve

# Faults are injected per port method; simulators filter them by HTTP method.
CW_HTTP_METHOD = {
    "post_note": "POST",
    "find_note": "GET",
    "get_ticket": "GET",
    "update_ticket_status": "PATCH",
}
# The SSRF guard as an operator running the simulators on loopback configures it.
LOOPBACK_OK = partial(check_site_url, policy=HostPolicy.parse("", allow_private=True))
CW_CREDENTIALS = {"public_key": "pub-key", "private_key": "priv-key", "client_id": "client-1"}


@dataclass(frozen=True)
class Statuses:
    """The vendor's ids for the statuses the contract talks about."""

    board_id: int | None  # the board new tickets land on (None where the PSA has no boards)
    new: int
    in_progress: int
    in_progress_name: str
    resolved: int
    inactive: int  # refused as a target
    # whether the PSA lists inactive statuses (flagged); Halo lists active ones only
    lists_inactive: bool
    # a (board, status) pair on another board, where statuses are board-scoped
    foreign: tuple[int, int] | None


class Harness(Protocol):
    provider: PsaProvider
    statuses: Statuses

    def new_ticket(self, status_id: int | None = None, board_id: int | None = None) -> str: ...

    def note_types(self, ticket_id: str) -> list[NoteType]: ...

    def inject(self, kind: str, ticket_id: str, method: str, **params: float) -> None:
        """One fault of `kind` (status_not_applied, rate_limit, server_error, slow,
        drop_after_store) on the next `method` call about the ticket. A slow answer must
        outlast the provider's timeout."""
        ...


CW_STATUSES = Statuses(
    board_id=1,
    new=1,
    in_progress=2,
    in_progress_name="In Progress",
    resolved=42,
    inactive=5,
    lists_inactive=True,
    foreign=(21, 17),
)


class FakeHarness:
    statuses = CW_STATUSES

    def __init__(self) -> None:
        self.provider = FakePsaProvider()
        self._next = 5000

    def new_ticket(self, status_id: int | None = None, board_id: int | None = None) -> str:
        self._next += 1
        board = board_id or 1
        default = self.provider.statuses[board][0].id
        self.provider.add_ticket(str(self._next), status_id or default, board)
        return str(self._next)

    def note_types(self, ticket_id: str) -> list[NoteType]:
        return [n.note_type for n in self.provider.notes[ticket_id]]

    def inject(self, kind: str, ticket_id: str, method: str, **params: float) -> None:
        if kind == "status_not_applied":
            self.provider.ignore_status_changes += 1
        elif kind == "drop_after_store":
            self.provider.drop_after_post += 1
        else:
            retry_after = params.get("retry_after") if kind == "rate_limit" else None
            self.provider.fail_next[method].append(PsaTransientError(kind, retry_after))


class ConnectWiseHarness:
    statuses = CW_STATUSES

    def __init__(self, server: RunningServer) -> None:
        self.url = server.url
        self.http = RecordingHttp(timeout=0.5)
        self.provider = ConnectWiseProvider(
            site_url=server.url,
            company_id="ACME",
            credentials=CW_CREDENTIALS,
            http=self.http,
            codebases=CodebaseCache(),
        )

    def drift(self) -> list[str]:
        """How the requests sent and the answers got differ from ConnectWise's OpenAPI."""
        return [problem for answer in self.http.answers for problem in check_exchange(answer)]

    def new_ticket(self, status_id: int | None = None, board_id: int | None = None) -> str:
        body = {"board_id": board_id or 1}
        if status_id is not None:
            body["status_id"] = status_id
        return str(requests.post(f"{self.url}/__sim/tickets", json=body, timeout=5).json()["id"])

    def note_types(self, ticket_id: str) -> list[NoteType]:
        notes = requests.get(f"{self.url}/__sim/tickets/{ticket_id}", timeout=5).json()["notes"]
        types = []
        for note in notes:
            if note["resolutionFlag"] and not note["internalAnalysisFlag"]:
                types.append(NoteType.RESOLUTION)
            elif note["internalAnalysisFlag"] and not (
                note["resolutionFlag"] or note["detailDescriptionFlag"]
            ):
                types.append(NoteType.INTERNAL_ANALYSIS)
        return types

    def inject(self, kind: str, ticket_id: str, method: str, **params: float) -> None:
        fault = {
            "kind": kind,
            "ticket_id": int(ticket_id),
            "method": CW_HTTP_METHOD[method],
            **params,
        }
        if kind == "slow":
            fault["delay"] = 1.0  # twice the provider's timeout
        requests.post(f"{self.url}/__sim/faults", json=fault, timeout=5).raise_for_status()


@pytest.fixture(scope="module")
def cw_server() -> Iterator[RunningServer]:
    with serve(cw_sim.create_app()) as server:
        yield server


# Autotask: (HTTP method, path filter) per port method; faults are also scoped to the ticket.
AT_CALLS = {
    "post_note": ("POST", "/Notes"),
    "find_note": ("POST", "/TicketNotes/query"),
    "get_ticket": ("GET", "/V1.0/Tickets/"),
    "update_ticket_status": ("PATCH", "/V1.0/Tickets"),
}
AT_CREDENTIALS = {
    "username": at_sim.USERNAME,
    "secret": at_sim.SECRET,
    "integration_code": at_sim.INTEGRATION_CODE,
}
AT_STATUSES = Statuses(
    board_id=None,
    new=1,
    in_progress=8,
    in_progress_name="In Progress",
    resolved=5,
    inactive=99,
    lists_inactive=True,
    foreign=None,
)


def _sim_fault(url: str, kind: str, ticket_id: str, call: tuple[str, str], **params: float) -> None:
    method, path = call
    fault = {"kind": kind, "ticket_id": int(ticket_id), "method": method, "path_contains": path}
    fault.update(params)
    if kind == "slow":
        fault["delay"] = 1.0  # twice the provider's timeout
    requests.post(f"{url}/__sim/faults", json=fault, timeout=5).raise_for_status()


def _sim_ticket(url: str, status_id: int | None) -> str:
    body = {} if status_id is None else {"status_id": status_id}
    return str(requests.post(f"{url}/__sim/tickets", json=body, timeout=5).json()["id"])


def _sim_notes(url: str, ticket_id: str) -> list[dict[str, Any]]:
    notes: list[dict[str, Any]] = requests.get(
        f"{url}/__sim/tickets/{ticket_id}", timeout=5
    ).json()["notes"]
    return notes


class AutotaskHarness:
    statuses = AT_STATUSES
    # The simulator's picklist values: (noteType, publish) per kind of note.
    NOTE_VALUES = {(2, 1): NoteType.RESOLUTION, (3, 2): NoteType.INTERNAL_ANALYSIS}

    def __init__(self, server: RunningServer) -> None:
        self.url = server.url
        self.provider = AutotaskProvider(
            site_url=server.url,
            credentials=AT_CREDENTIALS,
            http=HttpClient(timeout=0.5),
            cache=AutotaskCache(),
            check_url=LOOPBACK_OK,
        )

    def new_ticket(self, status_id: int | None = None, board_id: int | None = None) -> str:
        return _sim_ticket(self.url, status_id)

    def note_types(self, ticket_id: str) -> list[NoteType]:
        notes = _sim_notes(self.url, ticket_id)
        found = (self.NOTE_VALUES.get((n["noteType"], n["publish"])) for n in notes)
        return [t for t in found if t is not None]

    def inject(self, kind: str, ticket_id: str, method: str, **params: float) -> None:
        _sim_fault(self.url, kind, ticket_id, AT_CALLS[method], **params)


HALO_CALLS = {
    "post_note": ("POST", "/api/Actions"),
    "find_note": ("GET", "/api/Actions"),
    "get_ticket": ("GET", "/api/Tickets/"),
    "update_ticket_status": ("POST", "/api/Tickets"),
}
HALO_CREDENTIALS = {"client_id": halo_sim.CLIENT_ID, "client_secret": halo_sim.CLIENT_SECRET}
HALO_STATUSES = Statuses(
    board_id=None,
    new=1,
    in_progress=2,
    in_progress_name="In Progress",
    resolved=9,
    inactive=30,
    lists_inactive=False,
    foreign=None,
)


class HaloHarness:
    statuses = HALO_STATUSES

    def __init__(self, server: RunningServer) -> None:
        self.url = server.url
        self.provider = HaloProvider(
            site_url=server.url,
            tenant="",
            credentials=HALO_CREDENTIALS,
            http=HttpClient(timeout=0.5),
            cache=HaloCache(),
            check_url=LOOPBACK_OK,
        )

    def new_ticket(self, status_id: int | None = None, board_id: int | None = None) -> str:
        return _sim_ticket(self.url, status_id)

    def note_types(self, ticket_id: str) -> list[NoteType]:
        # Visibility is what matters: customer-visible resolution, internal-only handoff.
        return [
            NoteType.INTERNAL_ANALYSIS if n["hiddenfromuser"] else NoteType.RESOLUTION
            for n in _sim_notes(self.url, ticket_id)
        ]

    def inject(self, kind: str, ticket_id: str, method: str, **params: float) -> None:
        _sim_fault(self.url, kind, ticket_id, HALO_CALLS[method], **params)


@pytest.fixture(scope="module")
def at_server() -> Iterator[RunningServer]:
    with serve(at_sim.create_app()) as server:
        yield server


@pytest.fixture(scope="module")
def halo_server() -> Iterator[RunningServer]:
    with serve(halo_sim.create_app()) as server:
        yield server


HARNESSES: dict[str, Callable[[pytest.FixtureRequest], Harness]] = {
    "fake": lambda request: FakeHarness(),
    "connectwise": lambda request: ConnectWiseHarness(request.getfixturevalue("cw_server")),
    "autotask": lambda request: AutotaskHarness(request.getfixturevalue("at_server")),
    "halopsa": lambda request: HaloHarness(request.getfixturevalue("halo_server")),
}


@pytest.fixture(params=sorted(HARNESSES))
def psa(request: pytest.FixtureRequest) -> Iterator[Harness]:
    harness = HARNESSES[request.param](request)
    yield harness
    if isinstance(harness, ConnectWiseHarness):  # every exchange of every contract test
        assert harness.drift() == []
