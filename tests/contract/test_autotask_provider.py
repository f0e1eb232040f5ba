"""Autotask specifics beyond the shared contract, against the simulator over HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
import requests
from cryptography.fernet import Fernet
from flask import Flask

from tests.contract.conftest import LOOPBACK_OK
from tests.support import closed_url
from writeback.adapters.crypto import FernetSealer
from writeback.adapters.metrics import WorkerMetrics
from writeback.adapters.psa import autotask
from writeback.adapters.psa.autotask import (
    CREDENTIAL_FIELDS,
    NOTE_STYLES,
    AutotaskCache,
    AutotaskProvider,
    NoteStyle,
)
from writeback.adapters.psa.budget import LocalBucket, Rate, RequestBudget
from writeback.adapters.psa.http import HttpClient
from writeback.adapters.psa.registry import ProviderRegistry, default_specs
from writeback.adapters.psa.slots import LocalSlots
from writeback.domain.errors import (
    Failure,
    PsaAuthError,
    PsaError,
    PsaNotFound,
    PsaRejected,
    PsaTransientError,
)
from writeback.domain.model import Board, NoteType, PsaConnection
from writeback.domain.site_url import HostPolicy, check_site_url
from writeback_simulators import autotask as at_sim
from writeback_simulators.server import RunningServer, serve

GOOD = {
    "username": at_sim.USERNAME,
    "secret": at_sim.SECRET,
    "integration_code": at_sim.INTEGRATION_CODE,
}
ALLOW_LOOPBACK = LOOPBACK_OK
DISCOVERY = "/atservicesrest/V1.0/ZoneInformation"  # as the simulator logs it (any case works)


@pytest.fixture(scope="module")
def running() -> Iterator[RunningServer]:
    with serve(at_sim.create_app()) as server:
        yield server


@pytest.fixture
def server(running: RunningServer) -> RunningServer:
    requests.post(f"{running.url}/__sim/reset", timeout=5).raise_for_status()
    return running


def _provider(
    site_url: str,
    *,
    cache: AutotaskCache | None = None,
    check_url: Callable[[str], str] = ALLOW_LOOPBACK,
    **changes: Any,
) -> AutotaskProvider:
    credentials = {k: v for k, v in {**GOOD, **changes}.items() if k in CREDENTIAL_FIELDS}
    styles = changes.get("note_styles", NOTE_STYLES)
    return AutotaskProvider(
        site_url=site_url,
        credentials=credentials,
        http=HttpClient(timeout=2),
        cache=cache or AutotaskCache(),
        check_url=check_url,
        note_styles=styles,
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


def _notes(server: RunningServer, ticket: str) -> list[dict[str, Any]]:
    notes: list[dict[str, Any]] = requests.get(
        f"{server.url}/__sim/tickets/{ticket}", timeout=5
    ).json()["notes"]
    return notes


# --- what goes over the wire --------------------------------------------------------------------


def test_notes_carry_the_picklist_values_of_their_labels_and_the_auth_headers(
    server: RunningServer,
) -> None:
    ticket = _ticket(server)
    provider = _provider(server.url)

    resolution = provider.post_note(ticket, "Fixed.", NoteType.RESOLUTION)
    provider.post_note(ticket, "## Handoff", NoteType.INTERNAL_ANALYSIS)

    posts = [c for c in _calls(server, ticket) if c["method"] == "POST"]
    assert [c["path"] for c in posts] == [f"/atservicesrest/V1.0/Tickets/{ticket}/Notes"] * 2
    assert [c["body"] for c in posts] == [
        {"noteType": 2, "publish": 1, "title": "Resolution", "description": "Fixed."},
        {"noteType": 3, "publish": 2, "title": "Escalation handoff", "description": "## Handoff"},
    ]
    for call in posts:
        assert call["headers"]["Username"] == at_sim.USERNAME
        assert call["headers"]["Content-Type"] == "application/json"
        assert call["auth_headers"] == ["Apiintegrationcode", "Secret"]
    assert resolution.id == str(_notes(server, ticket)[0]["id"])


def test_discovery_sends_no_credentials_and_the_zone_is_cached(server: RunningServer) -> None:
    cache = AutotaskCache()
    ticket = _ticket(server)

    _provider(server.url, cache=cache).get_ticket(ticket)
    _provider(server.url, cache=cache).get_ticket(ticket)

    discoveries = [c for c in _calls(server) if c["path"].endswith("/ZoneInformation")]
    assert len(discoveries) == 1
    assert discoveries[0]["query"] == {"user": at_sim.USERNAME}
    assert discoveries[0]["auth_headers"] == []
    fields = [c for c in _calls(server) if c["path"].endswith("/entityInformation/fields")]
    assert len(fields) == 1  # the status picklist is cached too


def test_a_zone_the_ssrf_guard_refuses_never_gets_credentials(server: RunningServer) -> None:
    # The site itself was judged by the registry; the zone it hands back is judged here.
    provider = _provider(server.url, check_url=partial(check_site_url, policy=HostPolicy()))
    ticket = _ticket(server)

    with pytest.raises(PsaRejected, match="zone URL refused") as caught:
        provider.get_ticket(ticket)
    with pytest.raises(PsaError) as checked:
        provider.check_connection()

    assert caught.value.failed == checked.value.failed == "zone"
    assert [c["path"] for c in _calls(server)] == [DISCOVERY] * 2


def test_a_moved_zone_is_rediscovered_once(server: RunningServer) -> None:
    provider = _provider(server.url)
    ticket = _ticket(server)
    provider.get_ticket(ticket)

    requests.put(f"{server.url}/__sim/zone", json={"prefix": "ws5"}, timeout=5)

    assert provider.get_ticket(ticket).id == ticket
    gets = [(c["path"], c["status"]) for c in _calls(server, ticket)]
    assert gets[-2:] == [
        (f"/atservicesrest/V1.0/Tickets/{ticket}", 401),
        (f"/ws5/atservicesrest/V1.0/Tickets/{ticket}", 200),
    ]


def test_a_refusal_in_the_right_zone_is_not_retried(server: RunningServer) -> None:
    provider = _provider(server.url, secret="wrong")
    ticket = _ticket(server)

    with pytest.raises(PsaAuthError, match="401") as caught:
        provider.get_ticket(ticket)

    assert caught.value.failed == "credentials"
    assert at_sim.SECRET not in str(caught.value) and "wrong" not in str(caught.value)
    assert len(_calls(server, ticket)) == 1


def test_status_change_is_a_patch_of_id_and_status(server: RunningServer) -> None:
    ticket = _ticket(server)

    _provider(server.url).update_ticket_status(ticket, 5)

    [patch] = [c for c in _calls(server, ticket) if c["method"] == "PATCH"]
    assert patch["path"] == "/atservicesrest/V1.0/Tickets"
    assert patch["body"] == {"id": int(ticket), "status": 5}


@pytest.mark.parametrize("status", [99, 12345])
def test_an_unknown_or_inactive_status_is_refused_before_the_patch(
    server: RunningServer, status: int
) -> None:
    ticket = _ticket(server)

    with pytest.raises(PsaRejected, match=f"no active ticket status {status}"):
        _provider(server.url).update_ticket_status(ticket, status)

    assert not [c for c in _calls(server, ticket) if c["method"] == "PATCH"]


# --- picklist labels ----------------------------------------------------------------------------


def test_labels_match_ignoring_case_and_the_first_active_one_wins(server: RunningServer) -> None:
    ticket = _ticket(server)
    styles = {
        **NOTE_STYLES,
        NoteType.RESOLUTION: NoteStyle(("Old Type", "TASK detail"), ("all autotask users",), "T"),
    }

    _provider(server.url, note_styles=styles).post_note(ticket, "x", NoteType.RESOLUTION)

    [note] = _notes(server, ticket)
    assert (note["noteType"], note["publish"], note["title"]) == (1, 1, "T")


@pytest.mark.parametrize(
    ("style", "failed", "label"),
    [
        (NoteStyle(("Old Type",), ("All Autotask Users",), "T"), "note_type", "'Old Type'"),
        (NoteStyle(("Resolution",), ("Customer Portal",), "T"), "publish", "'Customer Portal'"),
    ],
)
def test_a_tenant_without_the_label_is_refused_naming_it(
    server: RunningServer, style: NoteStyle, failed: str, label: str
) -> None:
    ticket = _ticket(server)
    provider = _provider(server.url, note_styles={**NOTE_STYLES, NoteType.RESOLUTION: style})

    with pytest.raises(PsaRejected, match=label) as posted:
        provider.post_note(ticket, "x", NoteType.RESOLUTION)
    with pytest.raises(PsaRejected, match=label) as checked:
        provider.check_connection()

    assert posted.value.failed == checked.value.failed == failed
    assert _notes(server, ticket) == []


def test_note_picklists_are_read_once_and_again_for_a_missing_label(
    server: RunningServer,
) -> None:
    cache = AutotaskCache()
    ticket = _ticket(server)
    provider = _provider(server.url, cache=cache)
    provider.post_note(ticket, "one", NoteType.RESOLUTION)
    provider.post_note(ticket, "two", NoteType.RESOLUTION)
    missing = {**NOTE_STYLES, NoteType.RESOLUTION: NoteStyle(("Nope",), ("Nope",), "T")}
    with pytest.raises(PsaRejected):
        _provider(server.url, cache=cache, note_styles=missing).post_note(
            ticket, "x", NoteType.RESOLUTION
        )

    reads = [
        c for c in _calls(server) if c["path"].endswith("TicketNotes/entityInformation/fields")
    ]
    assert len(reads) == 2  # once for both posts, once more when a label was missing


def test_picklists_expire(server: RunningServer) -> None:
    now = [0.0]
    cache = AutotaskCache(picklist_ttl=60, clock=lambda: now[0])
    provider = _provider(server.url, cache=cache)
    ticket = _ticket(server)
    provider.get_ticket(ticket)
    now[0] = 61.0

    provider.get_ticket(ticket)

    reads = [c for c in _calls(server) if c["path"].endswith("Tickets/entityInformation/fields")]
    assert len(reads) == 2


# --- reading -----------------------------------------------------------------------------------


def test_the_status_name_comes_from_the_status_picklist(server: RunningServer) -> None:
    ticket = _ticket(server, status_id=11, summary="VPN down")

    read = _provider(server.url).get_ticket(ticket)

    assert (read.status_id, read.status_name, read.board_id, read.summary) == (
        11,
        "Escalate",
        None,
        "VPN down",
    )


def test_statuses_are_global_with_complete_as_the_closed_one(server: RunningServer) -> None:
    provider = _provider(server.url)

    statuses = {s.id: s for s in provider.list_statuses(None)}

    assert provider.list_boards() == [Board(id=None, name="All tickets")]
    assert {i: s.name for i, s in statuses.items()} == {
        1: "New",
        5: "Complete",
        7: "Waiting Customer",
        8: "In Progress",
        11: "Escalate",
        99: "Legacy",
    }
    assert [i for i, s in statuses.items() if s.closed] == [5]
    assert [i for i, s in statuses.items() if s.inactive] == [99]
    with pytest.raises(PsaRejected, match="no boards"):
        provider.list_statuses(1)


def test_find_note_takes_the_newest_match_on_the_ticket_only(server: RunningServer) -> None:
    ticket, other = _ticket(server), _ticket(server)
    provider = _provider(server.url)
    provider.post_note(other, "ref MARK-9 elsewhere", NoteType.RESOLUTION)
    provider.post_note(ticket, "first ref mark-9", NoteType.RESOLUTION)
    newest = provider.post_note(ticket, "second ref MARK-9", NoteType.INTERNAL_ANALYSIS)

    assert provider.find_note(ticket, "ref MARK-9") == newest
    [query] = [c for c in _calls(server, ticket) if c["path"].endswith("/query")]
    assert query["body"] == {
        "filter": [
            {
                "op": "and",
                "items": [
                    {"op": "eq", "field": "ticketID", "value": int(ticket)},
                    {"op": "contains", "field": "description", "value": "ref MARK-9"},
                ],
            }
        ]
    }


def test_a_vendor_refusal_carries_its_message(server: RunningServer) -> None:
    ticket = _ticket(server)

    with pytest.raises(PsaRejected, match="maximum length of 32000"):
        _provider(server.url).post_note(ticket, "x" * 32_001, NoteType.RESOLUTION)


def test_notes_on_an_unknown_ticket_are_not_found(server: RunningServer) -> None:
    with pytest.raises(PsaNotFound):
        _provider(server.url).post_note("424242", "lost", NoteType.RESOLUTION)


def test_a_non_numeric_ticket_id_never_reaches_a_url(server: RunningServer) -> None:
    provider = _provider(server.url)
    for bad in ("12/../../Companies", "1 ", "١٢", ""):
        with pytest.raises(PsaRejected, match="integer"):
            provider.get_ticket(bad)
    assert _calls(server) == []


def test_a_rate_limit_carries_retry_after(server: RunningServer) -> None:
    ticket = _ticket(server)
    spec = {"kind": "rate_limit", "retry_after": 9, "method": "PATCH"}
    requests.post(f"{server.url}/__sim/faults", json=spec, timeout=5)

    with pytest.raises(PsaTransientError, match="rate limited") as caught:
        _provider(server.url).update_ticket_status(ticket, 8)

    assert caught.value.retry_after == 9


# --- connection checks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "failed"),
    [
        ({"secret": "wrong"}, "credentials"),
        ({"username": "nobody@acme.example"}, "username"),
        ({"username": ""}, "username"),
        ({"integration_code": "OTHER"}, "integration_code"),
        ({"integration_code": ""}, "integration_code"),
    ],
)
def test_a_connection_check_names_what_failed(
    server: RunningServer, change: dict[str, str], failed: str
) -> None:
    with pytest.raises(PsaError) as caught:
        _provider(server.url, **change).check_connection()

    assert caught.value.failed == failed
    assert at_sim.SECRET not in str(caught.value)


def test_a_connection_check_rediscovers_and_passes(server: RunningServer) -> None:
    cache = AutotaskCache()
    cache.put_zone((server.url, at_sim.USERNAME.casefold()), "http://127.0.0.1:9/stale")

    _provider(server.url, cache=cache).check_connection()

    assert cache.zone((server.url, at_sim.USERNAME.casefold())) == f"{server.url}/atservicesrest"


def test_a_connection_check_blames_an_unreachable_host_on_the_site_url() -> None:
    with pytest.raises(PsaError) as caught:
        _provider(closed_url()).check_connection()
    assert caught.value.failed == "site_url"


def test_a_connection_check_blames_a_site_that_is_not_autotask_on_the_site_url() -> None:
    other = Flask("not_autotask")
    other.add_url_rule("/html/atservicesrest/v1.0/ZoneInformation", view_func=lambda: "<p>hi</p>")
    with serve(other) as site:
        for base in (site.url, f"{site.url}/html"):  # a 404 page, then a 200 page
            with pytest.raises(PsaError) as caught:
                _provider(base).check_connection()
            assert caught.value.failed == "site_url"


def test_an_unreachable_zone_is_blamed_on_the_zone(server: RunningServer) -> None:
    cache = AutotaskCache()
    cache.put_zone((server.url, at_sim.USERNAME.casefold()), f"{closed_url()}/atservicesrest")

    with pytest.raises(PsaTransientError) as caught:
        _provider(server.url, cache=cache).get_ticket(_ticket(server))

    assert caught.value.failed == "zone"


def _registry(
    server: RunningServer, *, timeout: float = 2.0, metrics: WorkerMetrics | None = None
) -> tuple[ProviderRegistry, PsaConnection]:
    """A registry as the service builds one (its own slots, a budget that never holds here),
    and a connection to the simulator."""
    sealer = FernetSealer([Fernet.generate_key().decode()])
    observer = metrics.observe_psa_answer if metrics is not None else None
    registry = ProviderRegistry(
        default_specs(),
        sealer=sealer,
        http=HttpClient(timeout=timeout, observer=observer),
        host_policy=HostPolicy.parse("", allow_private=True),
        budget=RequestBudget(LocalBucket(), {"autotask": Rate(1000.0, 1000)}),
        slots=LocalSlots(),
    )
    connection = PsaConnection(
        account_id=1,
        provider="autotask",
        site_url=server.url,
        company_id="Acme (label only)",
        credentials_encrypted=sealer.seal(GOOD),
        created_at=datetime.now(UTC),
    )
    return registry, connection


def test_the_registry_builds_autotask_providers_counted_under_their_name(
    server: RunningServer,
) -> None:
    metrics = WorkerMetrics()
    registry, connection = _registry(server, metrics=metrics)

    assert registry.credential_fields("autotask") == ("username", "secret", "integration_code")
    provider = registry.build(connection)
    provider.check_connection()
    assert provider.get_ticket(_ticket(server, status_id=8)).status_name == "In Progress"
    answers = {
        (sample.labels["vendor"], sample.labels["status"]): sample.value
        for metric in metrics.registry.collect()
        if metric.name == "writeback_psa_answers"
        for sample in metric.samples
        if sample.name.endswith("_total")
    }
    assert answers == {("autotask", "200"): len(_calls(server))}


# --- the thread limit: 3 requests in flight per endpoint and integration code -----------------


def _peaks(server: RunningServer) -> dict[str, int]:
    peaks: dict[str, int] = requests.get(f"{server.url}/__sim/threads", timeout=5).json()["peaks"]
    return peaks


def test_providers_of_one_connection_keep_the_thread_limit_together(
    server: RunningServer,
) -> None:
    """Eight providers of one connection (eight workers' steps) read a ticket at once while
    each answer takes 0.3 s: the simulator refuses a fourth request in flight, and none is."""
    registry, connection = _registry(server)
    ticket = _ticket(server, status_id=8)
    registry.build(connection).get_ticket(ticket)  # the zone and picklists, cached
    requests.post(
        f"{server.url}/__sim/faults",
        json={"kind": "slow", "delay": 0.3, "ticket_id": int(ticket), "times": -1},
        timeout=5,
    ).raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        read = list(pool.map(lambda _: registry.build(connection).get_ticket(ticket), range(8)))

    assert {t.status_name for t in read} == {"In Progress"}
    assert [c for c in _calls(server, ticket) if c["status"] == 429] == []
    assert _peaks(server)["Tickets"] == 3  # the limit was reached, never passed


def test_a_request_that_timed_out_keeps_its_slot_while_autotask_may_still_run_it(
    server: RunningServer,
) -> None:
    """Three reads time out (1 s) while Autotask works 1.3 s on each: the next read waits for
    their leases (twice the timeout) instead of drawing a 429 as a fourth in flight."""
    registry, connection = _registry(server, timeout=1.0)
    ticket = _ticket(server)
    registry.build(connection).get_ticket(ticket)
    requests.post(
        f"{server.url}/__sim/faults",
        json={"kind": "slow", "delay": 1.3, "ticket_id": int(ticket), "times": 3},
        timeout=5,
    ).raise_for_status()

    def timed_out(_: int) -> bool:
        try:
            registry.build(connection).get_ticket(ticket)
        except PsaTransientError:
            return True
        return False

    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(timed_out, range(3))) == [True] * 3
    registry.build(connection).get_ticket(ticket)

    assert [c["status"] for c in _calls(server, ticket)] == [200, 200, 200, 200, 200]


# --- answers Autotask gives as 500s -----------------------------------------------------------


def test_an_unknown_api_user_is_a_permanent_answer_not_an_outage(server: RunningServer) -> None:
    provider = _provider(server.url, username="nobody@acme.example")

    with pytest.raises(PsaNotFound) as caught:
        provider.get_ticket(_ticket(server))

    assert caught.value.failed == "username"
    assert caught.value.failure is Failure.PERMANENT
    assert "could not be determined" in caught.value.message  # the vendor's own words
    assert len(_calls(server)) == 1


def test_a_permission_refusal_is_permanent_and_carries_the_vendor_text(
    server: RunningServer,
) -> None:
    ticket = _ticket(server)
    requests.put(f"{server.url}/__sim/permissions", json={"create_notes": False}, timeout=5)

    with pytest.raises(PsaRejected) as caught:
        _provider(server.url).post_note(ticket, "x", NoteType.RESOLUTION)

    assert caught.value.failure is Failure.PERMANENT
    assert "does not have the adequate permissions" in caught.value.message
    assert len([c for c in _calls(server, ticket) if c["method"] == "POST"]) == 1


def test_a_real_outage_500_stays_transient(server: RunningServer) -> None:
    ticket = _ticket(server)
    fault = {"kind": "server_error", "status": 500, "method": "GET", "ticket_id": int(ticket)}
    requests.post(f"{server.url}/__sim/faults", json=fault, timeout=5).raise_for_status()

    with pytest.raises(PsaTransientError) as caught:
        _provider(server.url).get_ticket(ticket)

    assert caught.value.failure is Failure.TRANSIENT


# --- publish labels per connection -------------------------------------------------------------


def test_publish_labels_and_ids_are_per_connection_options(server: RunningServer) -> None:
    ticket = _ticket(server)
    options = autotask.Options.model_validate(
        {"publish": {"escalate": ["Internal & Co-Managed"], "resolve": [1]}}
    )
    provider = _provider(server.url, note_styles=options.note_styles())

    provider.post_note(ticket, "handoff", NoteType.INTERNAL_ANALYSIS)
    provider.post_note(ticket, "fixed", NoteType.RESOLUTION)

    notes = requests.get(f"{server.url}/__sim/tickets/{ticket}", timeout=5).json()["notes"]
    assert [n["publish"] for n in notes] == [3, 1]


def test_the_defaults_match_live_tenants_labels(server: RunningServer) -> None:
    ticket = _ticket(server)
    _provider(server.url).post_note(ticket, "handoff", NoteType.INTERNAL_ANALYSIS)
    [note] = requests.get(f"{server.url}/__sim/tickets/{ticket}", timeout=5).json()["notes"]
    assert note["publish"] == 2  # "Internal Project Team"; this tenant has no "Internal Only"


def test_a_missing_label_refuses_the_post_before_anything_is_posted(
    server: RunningServer,
) -> None:
    ticket = _ticket(server)
    options = autotask.Options.model_validate({"publish": {"escalate": ["Internal Only"]}})

    with pytest.raises(PsaRejected, match="Internal Only") as caught:
        _provider(server.url, note_styles=options.note_styles()).post_note(
            ticket, "handoff", NoteType.INTERNAL_ANALYSIS
        )

    assert caught.value.failed == "publish"
    assert not [c for c in _calls(server, ticket) if c["method"] == "POST"]
