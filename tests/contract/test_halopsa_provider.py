"""HaloPSA specifics beyond the shared contract, against the simulator over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from cryptography.fernet import Fernet
from flask import Flask

from tests.contract.conftest import LOOPBACK_OK
from tests.support import closed_url
from writeback.adapters.crypto import FernetSealer
from writeback.adapters.psa import halopsa
from writeback.adapters.psa.budget import DEFAULT_RATES, LocalBucket, RequestBudget
from writeback.adapters.psa.halopsa import ACTION_STYLES, ActionStyle, HaloCache, HaloProvider
from writeback.adapters.psa.http import HttpClient
from writeback.adapters.psa.registry import ProviderRegistry, default_specs
from writeback.adapters.psa.slots import LocalSlots
from writeback.domain.errors import (
    PsaAuthError,
    PsaError,
    PsaNotFound,
    PsaRejected,
    PsaTransientError,
)
from writeback.domain.model import Board, NoteType, PsaConnection
from writeback.domain.site_url import HostPolicy
from writeback_simulators import halopsa as halo_sim
from writeback_simulators.server import RunningServer, serve

GOOD = {"client_id": halo_sim.CLIENT_ID, "client_secret": halo_sim.CLIENT_SECRET}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def running() -> Iterator[RunningServer]:
    with serve(halo_sim.create_app()) as server:
        yield server


@pytest.fixture
def server(running: RunningServer) -> RunningServer:
    requests.post(f"{running.url}/__sim/reset", timeout=5).raise_for_status()
    return running


def _provider(
    site_url: str,
    *,
    cache: HaloCache | None = None,
    tenant: str = "",
    styles: dict[NoteType, ActionStyle] | None = None,
    options: halopsa.Options | None = None,
    **credentials: str,
) -> HaloProvider:
    return HaloProvider(
        site_url=site_url,
        tenant=tenant,
        credentials={**GOOD, **credentials},
        http=HttpClient(timeout=2),
        cache=cache or HaloCache(),
        check_url=LOOPBACK_OK,
        options=options,
        action_styles=styles or ACTION_STYLES,
    )


def _ticket(server: RunningServer, **fields: Any) -> str:
    response = requests.post(f"{server.url}/__sim/tickets", json=fields, timeout=5)
    return str(response.json()["id"])


def _calls(server: RunningServer, ticket: str | None = None) -> list[dict[str, Any]]:
    params = {"ticket_id": ticket} if ticket is not None else {}
    calls: list[dict[str, Any]] = requests.get(
        f"{server.url}/__sim/requests", params=params, timeout=5
    ).json()
    return calls


def _tokens(server: RunningServer) -> list[dict[str, Any]]:
    return [c for c in _calls(server) if c["path"] == "/auth/token"]


def _stored(server: RunningServer, ticket: str) -> dict[str, Any]:
    stored: dict[str, Any] = requests.get(f"{server.url}/__sim/tickets/{ticket}", timeout=5).json()
    return stored


# --- what goes over the wire --------------------------------------------------------------------


def test_notes_are_actions_posted_as_an_array_with_their_visibility(server: RunningServer) -> None:
    ticket = _ticket(server)
    provider = _provider(server.url)

    resolution = provider.post_note(ticket, "Fixed <b>it</b>\n& done", NoteType.RESOLUTION)
    handoff = provider.post_note(ticket, "## Handoff", NoteType.INTERNAL_ANALYSIS)

    posts = [c for c in _calls(server, ticket) if c["method"] == "POST"]
    assert [c["body"] for c in posts] == [
        [
            {
                "ticket_id": int(ticket),
                "note": "Fixed <b>it</b>\n& done",
                "note_html": "Fixed &lt;b&gt;it&lt;/b&gt;<br>&amp; done",
                "hiddenfromuser": False,
                "sendemail": False,
                "outcome": "Resolution",
            }
        ],
        [
            {
                "ticket_id": int(ticket),
                "note": "## Handoff",
                "note_html": "## Handoff",
                "hiddenfromuser": True,
                "sendemail": False,
                "outcome": "Private Note",
            }
        ],
    ]
    assert all(c["auth_headers"] == ["Authorization"] for c in posts)
    assert (resolution.id, handoff.id) == ("1", "2")
    assert [a["hiddenfromuser"] for a in _stored(server, ticket)["notes"]] == [False, True]


def test_an_outcome_can_be_left_out(server: RunningServer) -> None:
    ticket = _ticket(server)
    styles = {**ACTION_STYLES, NoteType.RESOLUTION: ActionStyle(False, None)}

    _provider(server.url, styles=styles).post_note(ticket, "x", NoteType.RESOLUTION)

    [post] = [c for c in _calls(server, ticket) if c["method"] == "POST"]
    assert "outcome" not in post["body"][0]


def test_the_token_request_is_a_client_credentials_form(server: RunningServer) -> None:
    _provider(server.url).check_connection()
    _provider(server.url, tenant="acme").check_connection()

    plain, tenant = _tokens(server)
    assert plain["query"] == {} and tenant["query"] == {"tenant": "acme"}
    assert plain["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert plain["body"] is None  # form bodies, with the secret, are never logged
    log = requests.get(f"{server.url}/__sim/requests", timeout=5).text
    assert halo_sim.CLIENT_SECRET not in log


def test_status_change_checks_first_then_upserts(server: RunningServer) -> None:
    ticket = _ticket(server)

    _provider(server.url).update_ticket_status(ticket, 9)

    calls = [(c["method"], c["path"]) for c in _calls(server, ticket)]
    assert calls == [("GET", f"/api/Tickets/{ticket}"), ("POST", "/api/Tickets")]
    assert _calls(server, ticket)[-1]["body"] == [{"id": int(ticket), "status_id": 9}]
    assert _stored(server, ticket)["status_id"] == 9


def test_a_status_change_of_an_unknown_ticket_upserts_nothing(server: RunningServer) -> None:
    with pytest.raises(PsaNotFound):
        _provider(server.url).update_ticket_status("424242", 9)

    assert not [c for c in _calls(server) if c["method"] == "POST" and c["path"] == "/api/Tickets"]


@pytest.mark.parametrize("status", [30, 77])
def test_an_unknown_or_inactive_status_is_refused_before_the_upsert(
    server: RunningServer, status: int
) -> None:
    ticket = _ticket(server)

    with pytest.raises(PsaRejected, match=f"no active status {status}"):
        _provider(server.url).update_ticket_status(ticket, status)

    assert not [c for c in _calls(server, ticket) if c["method"] == "POST"]


# --- tokens ------------------------------------------------------------------------------------


def test_a_token_is_cached_across_providers_with_the_same_credentials(
    server: RunningServer,
) -> None:
    cache = HaloCache()
    ticket = _ticket(server)

    _provider(server.url, cache=cache).get_ticket(ticket)
    _provider(server.url, cache=cache).get_ticket(ticket)
    with pytest.raises(PsaAuthError) as caught:
        _provider(server.url, cache=cache, client_secret="wrong").get_ticket(ticket)

    assert caught.value.failed == "credentials"
    assert len(_tokens(server)) == 2  # one shared token; the wrong secret borrowed nothing
    assert "wrong" not in str(caught.value)


def test_a_token_is_refreshed_before_it_expires(server: RunningServer) -> None:
    clock = Clock()
    cache = HaloCache(margin=60, clock=clock)
    provider = _provider(server.url, cache=cache)
    ticket = _ticket(server)
    provider.get_ticket(ticket)

    clock.now += 3600 - 61  # still good
    provider.get_ticket(ticket)
    assert len(_tokens(server)) == 1
    clock.now += 2  # within the margin: replaced before use
    provider.get_ticket(ticket)

    assert len(_tokens(server)) == 2
    assert all(c["status"] == 200 for c in _calls(server))


def test_a_short_lived_token_is_refreshed_within_half_its_lifetime(server: RunningServer) -> None:
    requests.put(f"{server.url}/__sim/tokens", json={"lifetime": 10}, timeout=5)
    clock = Clock()
    provider = _provider(server.url, cache=HaloCache(margin=60, clock=clock))
    ticket = _ticket(server)
    provider.get_ticket(ticket)

    clock.now += 4
    provider.get_ticket(ticket)
    clock.now += 2
    provider.get_ticket(ticket)

    assert len(_tokens(server)) == 2


def test_a_revoked_token_is_replaced_once_on_a_401(server: RunningServer) -> None:
    provider = _provider(server.url)
    ticket = _ticket(server)
    provider.get_ticket(ticket)
    requests.delete(f"{server.url}/__sim/tokens", timeout=5)

    note = provider.post_note(ticket, "after revocation", NoteType.RESOLUTION)

    assert note.id == "1"
    api = [(c["method"], c["status"]) for c in _calls(server, ticket)]
    assert api[-2:] == [("POST", 401), ("POST", 200)]
    assert len(_tokens(server)) == 2
    assert len(_stored(server, ticket)["notes"]) == 1


def test_a_token_that_never_works_is_an_auth_error_after_one_retry(
    server: RunningServer,
) -> None:
    requests.put(f"{server.url}/__sim/tokens", json={"lifetime": 0.001}, timeout=5)
    ticket = _ticket(server)

    with pytest.raises(PsaAuthError, match="401") as caught:
        _provider(server.url).get_ticket(ticket)

    assert caught.value.failed == "credentials"
    assert [c["status"] for c in _calls(server, ticket)] == [401, 401]
    assert len(_tokens(server)) == 2


def test_a_connection_check_always_asks_for_a_fresh_token(server: RunningServer) -> None:
    cache = HaloCache()
    provider = _provider(server.url, cache=cache)

    provider.check_connection()
    provider.check_connection()

    assert len(_tokens(server)) == 2


def test_a_rate_limited_token_request_is_transient(server: RunningServer) -> None:
    spec = {"kind": "rate_limit", "retry_after": 4, "path_contains": "/auth/token"}
    requests.post(f"{server.url}/__sim/faults", json=spec, timeout=5)

    with pytest.raises(PsaTransientError) as caught:
        _provider(server.url).check_connection()

    assert caught.value.retry_after == 4


# --- reading -----------------------------------------------------------------------------------


def test_the_status_name_comes_from_the_cached_status_list(server: RunningServer) -> None:
    cache = HaloCache()
    ticket = _ticket(server, status_id=21, summary="VPN down")

    read = _provider(server.url, cache=cache).get_ticket(ticket)
    _provider(server.url, cache=cache).get_ticket(ticket)

    assert (read.id, read.status_id, read.status_name, read.board_id, read.summary) == (
        ticket,
        21,
        "Escalated",
        None,
        "VPN down",
    )
    # One load of the list: all statuses, then those still open (the rest are closed).
    assert len([c for c in _calls(server) if c["path"] == "/api/Status"]) == 2


def test_statuses_are_global_and_closed_is_read_from_the_status_list(server: RunningServer) -> None:
    provider = _provider(server.url)

    statuses = {s.id: s for s in provider.list_statuses(None)}

    assert provider.list_boards() == [Board(id=None, name="All tickets")]
    assert set(statuses) == {1, 2, 4, 9, 21}  # the inactive status 30 is not listed
    assert [i for i, s in statuses.items() if s.closed] == [9]  # left out by excludeclosed
    assert not any(s.inactive for s in statuses.values())
    assert {s.board_id for s in statuses.values()} == {None}
    queries = [c["query"] for c in _calls(server) if c["path"] == "/api/Status"]
    assert queries == [{}, {"excludeclosed": "true"}]
    with pytest.raises(PsaRejected, match="no boards"):
        provider.list_statuses(1)


def test_find_note_pages_through_actions_and_takes_the_newest_match(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(halopsa, "PAGE_SIZE", 2)
    ticket = _ticket(server)
    provider = _provider(server.url)
    provider.post_note(ticket, "first ref MARK-7", NoteType.RESOLUTION)
    for n in range(3):
        provider.post_note(ticket, f"other {n}", NoteType.RESOLUTION)
    newest = provider.post_note(ticket, "second ref mark-7", NoteType.INTERNAL_ANALYSIS)

    assert provider.find_note(ticket, "ref MARK-7") == newest
    assert provider.find_note(ticket, "ref MARK-8") is None
    pages = [c["query"] for c in _calls(server, ticket) if c["method"] == "GET"]
    assert [p["page_no"] for p in pages] == ["1", "2", "3"] * 2
    assert pages[0] == {
        "ticket_id": ticket,
        "includehtmlnote": "true",  # so that notes stored as HTML only are searched too
        "pageinate": "true",
        "page_size": "2",
        "page_no": "1",
    }


def test_find_note_stops_when_the_server_ignores_paging(server: RunningServer) -> None:
    def all_actions() -> dict[str, Any]:
        return {"actions": [{"id": i, "note": f"n {i} ref X"} for i in range(1, 151)]}

    ignoring = Flask("ignores_paging")
    ignoring.add_url_rule("/api/Actions", view_func=all_actions)
    ignoring.add_url_rule(
        "/auth/token", view_func=lambda: {"access_token": "t", "expires_in": 60}, methods=["POST"]
    )
    with serve(ignoring) as site:
        found = _provider(site.url).find_note("5", "ref X")

    assert found is not None and found.id == "150"


def test_a_vendor_refusal_carries_its_plain_text_message(server: RunningServer) -> None:
    ticket = _ticket(server)
    styles = {**ACTION_STYLES, NoteType.RESOLUTION: ActionStyle(False, "Resolution")}
    provider = _provider(server.url, styles=styles)

    with pytest.raises(PsaRejected, match="An action needs a note"):
        provider.post_note(ticket, "", NoteType.RESOLUTION)


def test_a_non_numeric_ticket_id_never_reaches_a_url(server: RunningServer) -> None:
    provider = _provider(server.url)
    for bad in ("12/../Agent", "-1", "1.0", ""):
        with pytest.raises(PsaRejected, match="integer"):
            provider.get_ticket(bad)
    assert _calls(server) == []


# --- connection checks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "failed"),
    [
        ({"client_secret": "wrong"}, "credentials"),
        ({"client_id": "someone-else"}, "credentials"),
        ({"tenant": "globex"}, "tenant"),
    ],
)
def test_a_connection_check_names_what_failed(
    server: RunningServer, change: dict[str, str], failed: str
) -> None:
    with pytest.raises(PsaAuthError) as caught:
        _provider(server.url, **change).check_connection()

    assert caught.value.failed == failed
    assert halo_sim.CLIENT_SECRET not in str(caught.value)


def test_a_connection_check_blames_an_unreachable_host_on_the_site_url() -> None:
    with pytest.raises(PsaError) as caught:
        _provider(closed_url()).check_connection()
    assert caught.value.failed == "site_url"


def test_a_connection_check_blames_a_site_that_is_not_halo_on_the_site_url() -> None:
    other = Flask("not_halo")
    other.add_url_rule("/html/auth/token", view_func=lambda: "<p>hi</p>", methods=["POST"])
    with serve(other) as site:
        for base in (site.url, f"{site.url}/html"):  # a 404 page, then a 200 page
            with pytest.raises(PsaError) as caught:
                _provider(base).check_connection()
            assert caught.value.failed == "site_url"


def test_the_registry_builds_halo_providers_with_the_tenant(server: RunningServer) -> None:
    sealer = FernetSealer([Fernet.generate_key().decode()])
    registry = ProviderRegistry(
        default_specs(),
        sealer=sealer,
        http=HttpClient(timeout=2),
        host_policy=HostPolicy.parse("", allow_private=True),
        budget=RequestBudget(LocalBucket(), DEFAULT_RATES),
        slots=LocalSlots(),
    )
    connection = PsaConnection(
        account_id=1,
        provider="halopsa",
        site_url=server.url,
        company_id="acme",
        credentials_encrypted=sealer.seal(GOOD),
        created_at=datetime.now(UTC),
    )

    assert registry.credential_fields("halopsa") == ("client_id", "client_secret")
    provider = registry.build(connection)
    provider.check_connection()
    assert provider.get_ticket(_ticket(server, status_id=2)).status_name == "In Progress"
    assert _tokens(server)[0]["query"] == {"tenant": "acme"}


def test_configured_closed_statuses_replace_the_status_list_s_say(server: RunningServer) -> None:
    provider = _provider(server.url, options=halopsa.Options(closed_status_ids=[21]))

    statuses = {s.id: s for s in provider.list_statuses(None)}

    assert [i for i, s in statuses.items() if s.closed] == [21]
    assert [c["query"] for c in _calls(server) if c["path"] == "/api/Status"] == [{}]


# --- the authorisation server --------------------------------------------------------------------


def test_authinfo_names_the_auth_server_and_the_tenant(server: RunningServer) -> None:
    requests.put(
        f"{server.url}/__sim/authinfo",
        json={"auth_url": f"{server.url}/auth/", "tenant_id": halo_sim.TENANT},
        timeout=5,
    ).raise_for_status()

    _provider(server.url).check_connection()

    [token] = _tokens(server)
    assert token["query"] == {"tenant": halo_sim.TENANT}  # the tenant authinfo named
    assert [c["path"] for c in _calls(server)][0] == "/api/authinfo"


def test_a_site_without_authinfo_falls_back_to_its_own_auth_token(server: RunningServer) -> None:
    requests.put(f"{server.url}/__sim/authinfo", json={}, timeout=5).raise_for_status()

    _provider(server.url).check_connection()

    assert len(_tokens(server)) == 1


def test_a_configured_auth_url_is_used_without_asking_authinfo(server: RunningServer) -> None:
    options = halopsa.Options(auth_url=f"{server.url}/auth")

    _provider(server.url, tenant=halo_sim.TENANT, options=options).check_connection()

    assert "/api/authinfo" not in [c["path"] for c in _calls(server)]
    assert [t["query"] for t in _tokens(server)] == [{"tenant": halo_sim.TENANT}]


@pytest.mark.parametrize(
    "auth_url", ["http://169.254.169.254/auth", "http://metadata.google.internal/auth"]
)
def test_an_auth_server_that_fails_the_guard_never_gets_the_secret(
    server: RunningServer, auth_url: str
) -> None:
    requests.put(
        f"{server.url}/__sim/authinfo", json={"auth_url": auth_url}, timeout=5
    ).raise_for_status()

    with pytest.raises(PsaRejected) as caught:
        _provider(server.url).check_connection()

    assert caught.value.failed == "auth_url"
    assert _tokens(server) == []


def test_field_keyed_400s_become_readable_messages(server: RunningServer) -> None:
    with pytest.raises(PsaRejected) as caught:
        _provider(server.url).post_note("0", "x", NoteType.RESOLUTION)

    assert "[0].ticket_id: ticket_id is required" in caught.value.message
