"""ConnectWise specifics beyond the shared contract, against the simulator over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask, Response, jsonify

from tests.contract.cw_openapi import RecordingHttp, check_exchange
from writeback.adapters.psa import connectwise
from writeback.adapters.psa.connectwise import CodebaseCache, ConnectWiseProvider, Options
from writeback.adapters.psa.http import HttpClient
from writeback.domain.errors import Failure, PsaAuthError, PsaError, PsaNotFound, PsaRejected
from writeback.domain.model import NoteType
from writeback_simulators import connectwise as cw_sim
from writeback_simulators.server import RunningServer, serve

GOOD = {"public_key": "pub-key", "private_key": "priv-key", "client_id": "client-1"}


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with serve(cw_sim.create_app()) as running:
        yield running


def _provider(
    server: RunningServer,
    *,
    http: HttpClient | None = None,
    options: Options | None = None,
    **credentials: str,
) -> ConnectWiseProvider:
    return ConnectWiseProvider(
        site_url=server.url,
        company_id="ACME",
        credentials={**GOOD, **credentials},
        http=http or HttpClient(timeout=2),
        codebases=CodebaseCache(),
        options=options,
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


def test_an_unknown_company_is_a_permanent_failure_naming_the_company_id(
    server: RunningServer,
) -> None:
    provider = ConnectWiseProvider(
        site_url=server.url,
        company_id="NOPE",
        credentials=GOOD,
        http=HttpClient(timeout=2),
        codebases=CodebaseCache(),
    )
    # ConnectWise answers companyinfo for an unknown company with 200 and a JSON null.
    with pytest.raises(PsaNotFound) as caught:
        provider.check_connection()
    assert caught.value.failed == "company_id"
    assert caught.value.failure is Failure.PERMANENT
    with pytest.raises(PsaNotFound):  # a job fails at once too
        provider.get_ticket("1000")


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


def test_lists_page_on_our_own_host_with_page_plus_one(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = [s.id for s in _provider(server).list_statuses(1)]
    assert len(whole) == 6
    monkeypatch.setattr(connectwise, "PAGE_SIZE", 2)  # three full pages, then an empty one
    assert [s.id for s in _provider(server).list_statuses(1)] == whole
    log = requests.get(f"{server.url}/__sim/requests", timeout=5).json()
    pages = [c["query"] for c in log if c["path"].endswith("/boards/1/statuses")][1:]
    assert [(q["page"], q["pageSize"]) for q in pages] == [
        ("1", "2"),
        ("2", "2"),
        ("3", "2"),
        ("4", "2"),
    ]


def test_a_link_header_to_another_host_is_never_followed() -> None:
    elsewhere_hits: list[str] = []
    elsewhere = Flask("elsewhere")

    @elsewhere.route("/<path:path>")
    def record(path: str) -> Response:
        elsewhere_hits.append(path)
        return jsonify([{"id": 99, "name": "Injected", "inactiveFlag": False}])

    with serve(elsewhere) as other:
        lying = Flask("lying")

        @lying.route("/login/companyinfo/<company>")
        def company(company: str) -> Response:
            return jsonify({"Codebase": "v2025_1/"})

        @lying.route("/v2025_1/apis/3.0/service/boards")
        def boards() -> Response:
            response = jsonify([{"id": 1, "name": "Help Desk", "inactiveFlag": False}])
            response.headers["Link"] = f'<{other.url}/boards?page=2>; rel="next"'
            return response

        with serve(lying) as server:
            assert [b.id for b in _provider(server).list_boards()] == [1]
    assert elsewhere_hits == []


def test_every_request_and_answer_matches_the_vendor_openapi(server: RunningServer) -> None:
    http = RecordingHttp(timeout=2)
    provider = _provider(server, http=http)
    ticket = _ticket(server)
    provider.check_connection()
    provider.list_boards()
    provider.list_statuses(1)
    provider.post_note(ticket, "ref ABC", NoteType.RESOLUTION)
    provider.find_note(ticket, "ref ABC")
    provider.get_ticket(ticket)
    provider.update_ticket_status(ticket, 42)

    assert len(http.answers) >= 8
    assert [p for answer in http.answers for p in check_exchange(answer)] == []


def test_the_schema_check_catches_drift(server: RunningServer) -> None:
    http = RecordingHttp(timeout=2)
    _provider(server, http=http).list_boards()
    answer = http.answers[-1]
    answer._content = b'[{"id": "one", "name": "x", "location": {}, "department": {}, "bogus": 1}]'
    problems = check_exchange(answer)
    assert any("bogus" in p for p in problems) and any("answer to get" in p for p in problems)
    answer._content = b"[]"
    answer.headers["Content-Type"] = "application/json"  # not the vendor's media type
    assert check_exchange(answer) != []


def test_resolution_notes_send_all_three_flags(server: RunningServer) -> None:
    ticket = _ticket(server)
    _provider(server).post_note(ticket, "fixed", NoteType.RESOLUTION)
    [call] = _calls(server, ticket)
    body: Any = call["body"]
    assert {k: body[k] for k in connectwise.NOTE_FLAGS[NoteType.RESOLUTION]} == {
        "detailDescriptionFlag": False,
        "internalAnalysisFlag": False,
        "resolutionFlag": True,
    }


def test_the_accept_version_is_a_per_connection_setting(server: RunningServer) -> None:
    ticket = _ticket(server)
    http = RecordingHttp(timeout=2)
    _provider(server, http=http, options=Options(accept_version="2019.5")).get_ticket(ticket)
    [call] = _calls(server, ticket)
    headers: Any = call["headers"]
    assert headers["Accept"] == "application/vnd.connectwise.com+json; version=2019.5"
    assert http.answers[-1].headers["Content-Type"].endswith("version=2019.5")
    assert Options().accept_version == "2025.8"  # the documented default
    with pytest.raises(ValueError):
        Options(accept_version="latest")


def test_note_search_pages_through_notes_when_conditions_are_refused(
    server: RunningServer,
) -> None:
    ticket = _ticket(server)
    provider = _provider(server)
    mine = provider.post_note(ticket, "ours — ref 0123abcd", NoteType.RESOLUTION)
    provider.post_note(ticket, "someone else's", NoteType.RESOLUTION)
    requests.put(f"{server.url}/__sim/conditions", json={"notes": False}, timeout=5)

    assert provider.find_note(ticket, "ref 0123abcd") == mine
    assert provider.find_note(ticket, "ref ffffffff") is None
    gets = [c for c in _calls(server, ticket) if c["method"] == "GET"]
    assert [c["status"] for c in gets[:2]] == [400, 200]
    assert "conditions" not in gets[1]["query"] and gets[1]["query"]["page"] == "1"


def test_inactive_boards_are_left_out_of_discovery(server: RunningServer) -> None:
    assert [b.id for b in _provider(server).list_boards()] == [1, 21]  # 30 is inactive


@pytest.mark.parametrize(
    ("pasted", "api"),
    [
        ("https://na.myconnectwise.net", "https://api-na.myconnectwise.net"),
        ("https://EU.myconnectwise.net/v4_6_release/", "https://api-eu.myconnectwise.net"),
        ("https://au.myconnectwise.net", "https://api-au.myconnectwise.net"),
        ("https://aus.myconnectwise.net", "https://api-aus.myconnectwise.net"),
        ("https://za.myconnectwise.net", "https://api-za.myconnectwise.net"),
        ("https://staging.connectwisedev.com", "https://api-staging.connectwisedev.com"),
        ("https://api-na.myconnectwise.net", "https://api-na.myconnectwise.net"),
        ("https://cw.msp.example", "https://cw.msp.example"),
    ],
)
def test_cloud_ui_hosts_map_to_their_api_hosts(pasted: str, api: str) -> None:
    assert connectwise.api_site_url(pasted) == api
