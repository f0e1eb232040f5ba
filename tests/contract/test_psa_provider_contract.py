"""One contract for every PsaProvider: the in-memory fake and each real provider talking to its
simulator over HTTP. A fake that passes the same suite cannot drift from the real thing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import pytest
import requests

from tests.fakes import FakePsaProvider
from writeback.adapters.psa.connectwise import CodebaseCache, ConnectWiseProvider
from writeback.adapters.psa.http import HttpClient
from writeback.domain.errors import PsaNotFound, PsaRejected, PsaTransientError
from writeback.domain.model import NoteType
from writeback.domain.ports import PsaProvider
from writeback.simulators import connectwise as cw_sim
from writeback.simulators.server import RunningServer, serve

HTTP_METHOD = {
    "post_note": "POST",
    "find_note": "GET",
    "get_ticket": "GET",
    "update_ticket_status": "PATCH",
}
CW_CREDENTIALS = {"public_key": "pub-key", "private_key": "priv-key", "client_id": "client-1"}


class Harness(Protocol):
    provider: PsaProvider

    def new_ticket(self, status_id: int = 1, board_id: int = 1) -> str: ...

    def note_types(self, ticket_id: str) -> list[NoteType]: ...

    def inject(self, kind: str, ticket_id: str, method: str, **params: float) -> None: ...


class FakeHarness:
    def __init__(self) -> None:
        self.provider = FakePsaProvider()
        self._next = 5000

    def new_ticket(self, status_id: int = 1, board_id: int = 1) -> str:
        self._next += 1
        self.provider.add_ticket(str(self._next), status_id, board_id)
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
    def __init__(self, server: RunningServer) -> None:
        self.url = server.url
        self.provider = ConnectWiseProvider(
            site_url=server.url,
            company_id="ACME",
            credentials=CW_CREDENTIALS,
            http=HttpClient(timeout=0.5),
            codebases=CodebaseCache(),
        )

    def new_ticket(self, status_id: int = 1, board_id: int = 1) -> str:
        body = {"board_id": board_id, "status_id": status_id}
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
        fault = {"kind": kind, "ticket_id": int(ticket_id), "method": HTTP_METHOD[method], **params}
        if kind == "slow":
            fault["delay"] = 1.0  # twice the provider's timeout
        requests.post(f"{self.url}/__sim/faults", json=fault, timeout=5).raise_for_status()


@pytest.fixture(scope="module")
def cw_server() -> Iterator[RunningServer]:
    with serve(cw_sim.create_app()) as server:
        yield server


@pytest.fixture(params=["fake", "connectwise"])
def psa(request: pytest.FixtureRequest) -> Harness:
    if request.param == "fake":
        return FakeHarness()
    return ConnectWiseHarness(request.getfixturevalue("cw_server"))


def test_posts_a_customer_visible_resolution_note(psa: Harness) -> None:
    ticket = psa.new_ticket()
    note = psa.provider.post_note(ticket, "Fixed it.\n\n— ref abc123", NoteType.RESOLUTION)
    assert note.ticket_id == ticket and note.id
    assert psa.note_types(ticket) == [NoteType.RESOLUTION]


def test_posts_an_internal_only_handoff_note(psa: Harness) -> None:
    ticket = psa.new_ticket()
    psa.provider.post_note(ticket, "## Problem\nx", NoteType.INTERNAL_ANALYSIS)
    assert psa.note_types(ticket) == [NoteType.INTERNAL_ANALYSIS]


def test_finds_its_own_note_by_marker_and_nothing_else(psa: Harness) -> None:
    ticket = psa.new_ticket()
    psa.provider.post_note(ticket, "someone else's note", NoteType.RESOLUTION)
    mine = psa.provider.post_note(
        ticket, "ours\n\n— psa-writeback ref 0123abcd", NoteType.RESOLUTION
    )
    assert psa.provider.find_note(ticket, "psa-writeback ref 0123abcd") == mine
    assert psa.provider.find_note(ticket, "psa-writeback ref ffffffff") is None


def test_reads_the_ticket_status(psa: Harness) -> None:
    ticket = psa.new_ticket(status_id=2)
    read = psa.provider.get_ticket(ticket)
    assert (read.id, read.status_id, read.status_name, read.board_id) == (
        ticket,
        2,
        "In Progress",
        1,
    )


def test_changes_the_status_and_a_fresh_read_shows_it(psa: Harness) -> None:
    ticket = psa.new_ticket()
    psa.provider.update_ticket_status(ticket, 42)
    assert psa.provider.get_ticket(ticket).status_id == 42


def test_lists_boards_and_their_statuses_with_flags(psa: Harness) -> None:
    boards = {b.id: b.name for b in psa.provider.list_boards()}
    assert boards[1] == "Help Desk"
    statuses = {s.id: s for s in psa.provider.list_statuses(1)}
    assert statuses[42].name == "Resolved" and statuses[42].closed
    assert statuses[42].escalation == "Resolved" and statuses[42].board_id == 1
    assert statuses[5].inactive and not statuses[1].inactive


def test_a_healthy_connection_checks_out(psa: Harness) -> None:
    psa.provider.check_connection()


def test_an_inactive_status_is_rejected(psa: Harness) -> None:
    with pytest.raises(PsaRejected):
        psa.provider.update_ticket_status(psa.new_ticket(), 5)


def test_a_status_of_another_board_is_rejected(psa: Harness) -> None:
    ticket = psa.new_ticket(status_id=17, board_id=21)
    with pytest.raises(PsaRejected, match="not found for Service Board 21"):
        psa.provider.update_ticket_status(ticket, 42)


def test_an_unknown_ticket_is_not_found(psa: Harness) -> None:
    with pytest.raises(PsaNotFound):
        psa.provider.get_ticket("999999")


def test_a_status_change_accepted_but_not_applied_shows_only_on_re_read(psa: Harness) -> None:
    ticket = psa.new_ticket()
    psa.inject("status_not_applied", ticket, "update_ticket_status")
    psa.provider.update_ticket_status(ticket, 42)  # no error: the PSA said yes
    assert psa.provider.get_ticket(ticket).status_id == 1


def test_rate_limit_is_transient_and_carries_retry_after(psa: Harness) -> None:
    ticket = psa.new_ticket()
    psa.inject("rate_limit", ticket, "get_ticket", retry_after=7)
    with pytest.raises(PsaTransientError) as caught:
        psa.provider.get_ticket(ticket)
    assert caught.value.retry_after == 7
    assert psa.provider.get_ticket(ticket).status_id == 1  # once only


def test_server_errors_are_transient(psa: Harness) -> None:
    ticket = psa.new_ticket()
    psa.inject("server_error", ticket, "update_ticket_status", status=503)
    with pytest.raises(PsaTransientError):
        psa.provider.update_ticket_status(ticket, 42)


def test_a_slow_answer_past_the_timeout_is_transient(psa: Harness) -> None:
    ticket = psa.new_ticket()
    psa.inject("slow", ticket, "get_ticket")
    with pytest.raises(PsaTransientError):
        psa.provider.get_ticket(ticket)


def test_note_stored_then_connection_dropped_is_transient_and_findable(psa: Harness) -> None:
    ticket = psa.new_ticket()
    psa.inject("drop_after_store", ticket, "post_note")
    with pytest.raises(PsaTransientError):
        psa.provider.post_note(ticket, "body\n\n— psa-writeback ref dropped1", NoteType.RESOLUTION)
    assert psa.provider.find_note(ticket, "psa-writeback ref dropped1") is not None
    assert len(psa.note_types(ticket)) == 1
