"""Per-board target statuses, discovery endpoints and connection checks, and the whole pipeline
against Autotask and HaloPSA: the same resolve / escalate / verify behaviour as ConnectWise."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import Api, Simulator
from writeback_simulators import autotask, halopsa
from writeback_simulators.server import serve

pytestmark = pytest.mark.integration


def test_status_map_resolves_names_per_board_at_run_time(api: Api, simulator: Simulator) -> None:
    connection_id = api.connect_simulator(simulator.url)
    mapping = {
        "mappings": [
            {"board_id": 21, "kind": "resolve", "status": "Complete"},
            {"board_id": None, "kind": "resolve", "status": "Resolved"},
        ]
    }
    assert api.put(f"/psa-connections/{connection_id}/status-map", mapping, expect=200) == {
        "mappings": [
            {"board_id": 21, "kind": "resolve", "status_id": None, "status_name": "Complete"},
            {"board_id": None, "kind": "resolve", "status_id": None, "status_name": "Resolved"},
        ]
    }
    projects = simulator.new_ticket(board_id=21)
    help_desk = simulator.new_ticket(board_id=1)

    on_projects = api.wait_job(api.start(api.session(connection_id, projects))["job_id"])
    on_help_desk = api.wait_job(api.start(api.session(connection_id, help_desk))["job_id"])

    assert (on_projects["verified_status_id"], on_projects["verified_status_name"]) == (
        18,
        "Complete",
    )
    assert on_help_desk["verified_status_id"] == 42


def test_a_status_name_missing_on_the_board_fails_before_any_note(
    api: Api, simulator: Simulator
) -> None:
    connection_id = api.connect_simulator(simulator.url)
    api.put(
        f"/psa-connections/{connection_id}/status-map",
        {"mappings": [{"kind": "escalate", "status": "Escalated to Tier 3"}]},
        expect=200,
    )
    ticket = simulator.new_ticket()

    job = api.wait_job(api.start(api.session(connection_id, ticket), "escalate")["job_id"])

    assert job["state"] == "failed" and job["error"]["code"] == "status_not_found"
    assert "Escalated to Tier 3" in job["error"]["message"]
    assert simulator.ticket(ticket)["notes"] == []


def test_the_status_map_is_validated_and_scoped_to_the_account(
    api: Api, other_api: Api, simulator: Simulator
) -> None:
    connection_id = api.connect_simulator(simulator.url)
    twice = {
        "mappings": [
            {"board_id": 1, "kind": "resolve", "status": 42},
            {"board_id": 1, "kind": "resolve", "status": "Resolved"},
        ]
    }
    problem = api.put(f"/psa-connections/{connection_id}/status-map", twice, expect=422)
    assert problem["errors"][0]["field"] == "mappings.1"
    bad = {"mappings": [{"kind": "close", "status": 0}]}
    fields = {
        e["field"]
        for e in api.put(f"/psa-connections/{connection_id}/status-map", bad, expect=422)["errors"]
    }
    assert "mappings.0.kind" in fields
    other_api.get(f"/psa-connections/{connection_id}/status-map", expect=404)


def test_boards_and_statuses_can_be_discovered(api: Api, simulator: Simulator) -> None:
    connection_id = api.connect_simulator(simulator.url)
    boards = api.get(f"/psa-connections/{connection_id}/boards")["boards"]
    assert {"id": 21, "name": "Projects"} in boards
    statuses = api.get(f"/psa-connections/{connection_id}/boards/1/statuses")["statuses"]
    resolved = next(s for s in statuses if s["id"] == 42)
    assert resolved["closedStatus"] is True and resolved["escalationStatus"] == "Resolved"
    assert any(s["inactive"] for s in statuses)


def test_a_connection_check_says_what_failed(api: Api, simulator: Simulator) -> None:
    good = api.connect_simulator(simulator.url)
    assert api.post(f"/psa-connections/{good}/test", expect=200)["ok"] is True
    bad = api.post(
        "/psa-connections",
        {
            "provider": "connectwise",
            "site_url": simulator.url,
            "company_id": "ACME",
            "credentials": {"public_key": "pub-key", "private_key": "wrong", "client_id": "c"},
        },
        expect=201,
    )["id"]
    check = api.post(f"/psa-connections/{bad}/test", expect=200)
    assert (check["ok"], check["failed"]) == (False, "credentials")
    assert "wrong" not in str(check)
    problem = api.get(f"/psa-connections/{bad}/boards", expect=502)
    assert problem["code"] == "psa_auth_failed"


VENDORS: dict[str, dict[str, Any]] = {
    "autotask": {
        "app": autotask.create_app,
        "company_id": "acme",
        "credentials": {
            "username": "api@acme.example",
            "secret": "at-secret",
            "integration_code": "AT-INTEGRATION",
        },
        "resolved": "Complete",
        "escalated": "Escalate",
        "customer_visible": lambda note: note["publish"] == 1,
    },
    "halopsa": {
        "app": halopsa.create_app,
        "company_id": "acme",
        "credentials": {"client_id": "halo-client", "client_secret": "halo-secret"},
        "resolved": "Closed",
        "escalated": "Escalated",
        "customer_visible": lambda note: note["hiddenfromuser"] is False,
    },
}


@pytest.fixture(params=sorted(VENDORS))
def vendor(request: pytest.FixtureRequest) -> Iterator[tuple[dict[str, Any], Simulator]]:
    spec = VENDORS[request.param]
    with serve(spec["app"]()) as server:
        yield spec, Simulator(server.url)


def test_resolve_and_escalate_work_the_same_on_every_psa(
    api: Api, vendor: tuple[dict[str, Any], Simulator]
) -> None:
    spec, sim = vendor
    connection_id = api.post(
        "/psa-connections",
        {
            "provider": next(k for k, v in VENDORS.items() if v is spec),
            "site_url": sim.url,
            "company_id": spec["company_id"],
            "credentials": spec["credentials"],
        },
        expect=201,
    )["id"]
    assert api.post(f"/psa-connections/{connection_id}/test", expect=200)["ok"] is True
    api.put(
        f"/psa-connections/{connection_id}/status-map",
        {
            "mappings": [
                {"kind": "resolve", "status": spec["resolved"]},
                {"kind": "escalate", "status": spec["escalated"]},
            ]
        },
        expect=200,
    )

    for kind, visible in (("resolve", True), ("escalate", False)):
        ticket = sim.new_ticket()
        job = api.wait_job(api.start(api.session(connection_id, ticket), kind)["job_id"])
        [note] = sim.ticket(ticket)["notes"]
        assert job["state"] == "succeeded", job
        assert job["verified_status_name"] == spec[f"{kind}d"]
        assert spec["customer_visible"](note) is visible

    stuck = sim.new_ticket()
    sim.fault("status_not_applied", stuck, times=-1)
    failed = api.wait_job(api.start(api.session(connection_id, stuck))["job_id"])
    assert failed["error"]["code"] == "status_verification_failed"
    assert len(sim.ticket(stuck)["notes"]) == 1

    dropped = sim.new_ticket()
    sim.fault("drop_after_store", dropped, method="POST")
    recovered = api.wait_job(api.start(api.session(connection_id, dropped))["job_id"])
    assert recovered["state"] == "succeeded" and len(sim.ticket(dropped)["notes"]) == 1
