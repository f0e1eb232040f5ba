"""ConnectWise specifics beyond the shared contract, against the simulator over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from writeback.adapters.psa import connectwise
from writeback.adapters.psa.connectwise import CodebaseCache, ConnectWiseProvider
from writeback.adapters.psa.http import HttpClient
from writeback.domain.errors import PsaAuthError, PsaError, PsaRejected
from writeback.domain.model import NoteType
from writeback_simulators import connectwise as cw_sim
from writeback_simulators.server import RunningServer, serve

GOOD = {"public_key": "pub-key", "private_key": "priv-key", "client_id": "client-1"}


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with serve(cw_sim.create_app()) as running:
        yield running


def _provider(server: RunningServer, **credentials: str) -> ConnectWiseProvider:
    return ConnectWiseProvider(
        site_url=server.url,
        company_id="ACME",
        credentials={**GOOD, **credentials},
        http=HttpClient(timeout=2),
        codebases=CodebaseCache(),
    )


def _ticket(server: RunningServer) -> str:
    return str(requests.post(f"{server.url}/__sim/tickets", json={}, timeout=5).json()["id"])


def _calls(server: RunningServer, ticket: str) -> list[dict[str, object]]:
    return requests.get(
        f"{server.url}/__sim/requests", params={"ticket_id": ticket}, timeout=5
    ).json()


def test_sends_basic_auth_client_id_and_the_documented_note_body(server: RunningServer) -> None:
    ticket = _ticket(server)
    _provider(server).post_note(ticket, "handoff", NoteType.INTERNAL_ANALYSIS)
    [call] = _calls(server, ticket)
    assert call["method"] == "POST" and str(call["path"]).startswith("/v2025_1/apis/3.0/")
    assert call["body"] == {
        "text": "handoff",
        "processNotifications": False,
        "internalAnalysisFlag": True,
        "detailDescriptionFlag": False,
        "resolutionFlag": False,
    }
    headers = call["headers"]
    assert isinstance(headers, dict) and headers.get("Clientid") == "client-1"
    assert "Authorization" not in headers  # the simulator never logs credentials


def test_status_change_is_a_json_patch(server: RunningServer) -> None:
    ticket = _ticket(server)
    _provider(server).update_ticket_status(ticket, 42)
    [call] = _calls(server, ticket)
    assert call["method"] == "PATCH"
    assert call["body"] == [{"op": "replace", "path": "status", "value": {"id": 42}}]


def test_bad_credentials_are_an_auth_error(server: RunningServer) -> None:
    with pytest.raises(PsaAuthError, match="401"):
        _provider(server, private_key="wrong").get_ticket(_ticket(server))


def test_missing_client_id_is_an_auth_error_that_says_so(server: RunningServer) -> None:
    with pytest.raises(PsaAuthError, match="clientId"):
        _provider(server, client_id="").get_ticket(_ticket(server))


def test_a_moved_codebase_is_rediscovered_once(server: RunningServer) -> None:
    provider = _provider(server)
    ticket = _ticket(server)
    provider.get_ticket(ticket)  # discovers v2025_1/
    requests.put(f"{server.url}/__sim/codebase", json={"codebase": "v2025_2/"}, timeout=5)
    assert provider.get_ticket(ticket).id == ticket
    paths = [str(c["path"]) for c in _calls(server, ticket)]
    assert paths[-2].startswith("/v2025_1/") and paths[-1].startswith("/v2025_2/")


def test_a_non_numeric_ticket_id_never_reaches_a_url(server: RunningServer) -> None:
    with pytest.raises(PsaRejected, match="integer"):
        _provider(server).get_ticket("12/../../system/members")


@pytest.mark.parametrize(
    ("change", "failed"),
    [
        ({"private_key": "wrong"}, "credentials"),
        ({"client_id": ""}, "client_id"),
    ],
)
def test_a_connection_check_names_what_failed(
    server: RunningServer, change: dict[str, str], failed: str
) -> None:
    with pytest.raises(PsaError) as caught:
        _provider(server, **change).check_connection()
    assert caught.value.failed == failed


def test_a_connection_check_blames_an_unknown_company_on_the_codebase(
    server: RunningServer,
) -> None:
    provider = ConnectWiseProvider(
        site_url=server.url,
        company_id="NOPE",
        credentials=GOOD,
        http=HttpClient(timeout=2),
        codebases=CodebaseCache(),
    )
    with pytest.raises(PsaError) as caught:
        provider.check_connection()
    assert caught.value.failed == "codebase"


def test_a_connection_check_blames_an_unreachable_host_on_the_site_url() -> None:
    with serve(cw_sim.create_app()) as gone:
        url = gone.url
    provider = ConnectWiseProvider(
        site_url=url,
        company_id="ACME",
        credentials=GOOD,
        http=HttpClient(timeout=1),
        codebases=CodebaseCache(),
    )
    with pytest.raises(PsaError) as caught:
        provider.check_connection()
    assert caught.value.failed == "site_url"


def test_lists_follow_link_header_paging(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = [s.id for s in _provider(server).list_statuses(1)]
    assert len(whole) == 6
    monkeypatch.setattr(connectwise, "PAGE_SIZE", 2)  # three pages, linked by rel="next"
    assert [s.id for s in _provider(server).list_statuses(1)] == whole
