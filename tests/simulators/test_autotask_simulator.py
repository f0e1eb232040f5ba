"""The Autotask simulator over real HTTP: discovery, header auth, picklists, notes, queries, status
changes, the control API and injected faults (the shared fault machinery in faults.py)."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.simulators.conftest import (
    INVALID_FAULT_SPECS,
    PsaSimClient,
    connection_dropped,
    run_module,
    simulator_fixtures,
    simulator_warnings,
)
from tests.support import wait_until
from writeback_simulators.autotask import INTEGRATION_CODE, SECRET, USERNAME, create_app

HEADERS = {"UserName": USERNAME, "Secret": SECRET, "ApiIntegrationCode": INTEGRATION_CODE}


class Sim(PsaSimClient):
    """Vendor calls with credentials, in the zone the server starts with; control calls."""

    def __init__(self, url: str, session: requests.Session) -> None:
        super().__init__(url, session)
        self.zone = f"{url}/atservicesrest"

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("headers", HEADERS)
        return self.session.request(method, f"{self.zone}/V1.0/{path}", timeout=5, **kwargs)

    def discover(self, user: str = USERNAME) -> requests.Response:
        return self.session.get(
            f"{self.url}/atservicesrest/v1.0/ZoneInformation", params={"user": user}, timeout=5
        )

    def add_note(self, ticket_id: int, description: str, **fields: Any) -> requests.Response:
        body = {"noteType": 1, "publish": 2, "title": "Note", "description": description, **fields}
        return self.api("POST", f"Tickets/{ticket_id}/Notes", json=body)

    def query(self, *filters: Any) -> requests.Response:
        return self.api("POST", "TicketNotes/query", json={"filter": list(filters)})


server, sim = simulator_fixtures(create_app, Sim)


def _eq(field: str, value: Any) -> dict[str, Any]:
    return {"op": "eq", "field": field, "value": value}


# --- discovery and auth ------------------------------------------------------------------------


def test_zone_information_needs_no_credentials_and_knows_only_api_users(sim: Sim) -> None:
    known = sim.discover()
    unknown = sim.discover("nobody@acme.example")
    missing = sim.session.get(f"{sim.url}/atservicesrest/v1.0/ZoneInformation", timeout=5)

    assert known.status_code == 200
    assert known.json() == {
        "zoneName": "Simulated Zone",
        "url": f"{sim.url}/atservicesrest/",
        "webUrl": f"{sim.url}/",
        "ci": 12345,
    }
    assert sim.discover(USERNAME.upper()).json()["url"] == f"{sim.url}/atservicesrest/"
    # Autotask answers an unknown or blank user with a 500 carrying its errors.
    assert unknown.status_code == 500 and unknown.json()["errors"]
    assert missing.status_code == 500 and missing.json()["errors"]


def test_bad_credentials_and_a_bad_integration_code_are_told_apart(sim: Sim) -> None:
    path = f"Tickets/{sim.new_ticket()}"

    answers = {
        "secret": sim.api("GET", path, headers={**HEADERS, "Secret": "wrong"}),
        "user": sim.api("GET", path, headers={**HEADERS, "UserName": "x@acme.example"}),
        "none": sim.api("GET", path, headers={}),
        "code": sim.api("GET", path, headers={**HEADERS, "ApiIntegrationCode": "OTHER"}),
        "no code": sim.api("GET", path, headers={"UserName": USERNAME, "Secret": SECRET}),
    }

    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 401)
    for name in ("code", "no code"):
        assert "ApiIntegrationCode" in answers[name].json()["errors"][0]
    for name in ("secret", "user", "none"):
        assert "IntegrationCode" not in answers[name].json()["errors"][0]
    assert sim.api("GET", path).status_code == 200


def test_paths_are_matched_in_any_case_like_the_real_service(sim: Sim) -> None:
    ticket_id = sim.new_ticket()

    lower = sim.session.get(
        f"{sim.url}/atservicesrest/v1.0/tickets/{ticket_id}", headers=HEADERS, timeout=5
    )
    zone_lower = sim.session.get(
        f"{sim.url}/ATServicesRest/v1.0/zoneInformation", params={"user": USERNAME}, timeout=5
    )

    assert lower.status_code == 200 and lower.json()["item"]["id"] == ticket_id
    assert zone_lower.status_code == 200 and zone_lower.json()["url"]
    assert sim.session.get(f"{sim.url}/atservicesrest/V1.0/Nope", timeout=5).status_code == 404


def test_note_creation_can_be_refused_for_missing_permissions_with_a_500(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    sim.control("PUT", "permissions", json={"create_notes": False})
    body = {"noteType": 1, "publish": 1, "title": "t", "description": "d"}

    refused = sim.api("POST", f"Tickets/{ticket_id}/Notes", json=body)
    sim.control("PUT", "permissions", json={"create_notes": True})

    assert refused.status_code == 500
    assert "adequate permissions" in refused.json()["errors"][0]
    assert sim.api("POST", f"Tickets/{ticket_id}/Notes", json=body).status_code == 200


def test_a_moved_zone_refuses_the_old_one(sim: Sim) -> None:
    ticket_id = sim.new_ticket()

    moved = sim.control("PUT", "zone", json={"prefix": "ws5"})
    old = sim.api("GET", f"Tickets/{ticket_id}")
    sim.zone = sim.discover().json()["url"].rstrip("/")
    new = sim.api("GET", f"Tickets/{ticket_id}")

    assert moved.json() == {"url": f"{sim.url}/ws5/atservicesrest/"}
    assert old.status_code == 401
    assert sim.zone == f"{sim.url}/ws5/atservicesrest"
    assert new.status_code == 200 and new.json()["item"]["id"] == ticket_id
    assert sim.control("PUT", "zone", json={"prefix": "a/b"}).status_code == 400
    assert sim.control("PUT", "zone", json={"prefix": 5}).status_code == 400


# --- picklists ---------------------------------------------------------------------------------


def test_picklists_carry_string_values_labels_and_active_flags(sim: Sim) -> None:
    tickets = sim.api("GET", "Tickets/entityInformation/fields").json()["fields"]
    notes = sim.api("GET", "TicketNotes/entityInformation/fields").json()["fields"]

    def picklist(fields: list[dict[str, Any]], name: str) -> dict[str, tuple[str, bool]]:
        [field] = [f for f in fields if f["name"] == name]
        assert field["isPickList"] is True
        return {v["value"]: (v["label"], v["isActive"]) for v in field["picklistValues"]}

    assert picklist(tickets, "status") == {
        "1": ("New", True),
        "5": ("Complete", True),
        "7": ("Waiting Customer", True),
        "8": ("In Progress", True),
        "11": ("Escalate", True),
        "99": ("Legacy", False),
    }
    assert picklist(notes, "publish") == {
        "1": ("All Autotask Users", True),
        "2": ("Internal Project Team", True),
        "3": ("Internal & Co-Managed", True),
    }
    assert picklist(notes, "noteType")["2"] == ("Resolution", True)
    assert picklist(notes, "noteType")["4"] == ("Old Type", False)
    assert [f for f in notes if f["name"] == "description"][0]["isPickList"] is False


# --- notes -------------------------------------------------------------------------------------


def test_a_note_is_stored_with_its_picklist_values(sim: Sim) -> None:
    ticket_id = sim.new_ticket()

    created = sim.add_note(ticket_id, "Fixed **it**", noteType=2, publish=1, title="Resolution")

    assert created.status_code == 200
    note_id = created.json()["itemId"]
    [note] = sim.stored(ticket_id)["notes"]
    assert note["id"] == note_id and note["ticketID"] == ticket_id
    assert (note["noteType"], note["publish"], note["title"]) == (2, 1, "Resolution")
    assert note["description"] == "Fixed **it**"
    assert note["createDateTime"].endswith("Z")
    assert sim.add_note(sim.new_ticket(), "next").json()["itemId"] > note_id


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"title": ""}, "Title"),
        ({"title": None}, "Title"),
        ({"description": "  "}, "Description"),
        ({"description": "x" * 32_001}, "maximum length"),
        ({"noteType": 4}, "noteType"),
        ({"noteType": 42}, "noteType"),
        ({"publish": "1"}, "publish"),
        ({"ticketID": 1}, "ticketID"),
    ],
)
def test_invalid_notes_are_refused(sim: Sim, fields: dict[str, Any], message: str) -> None:
    ticket_id = sim.new_ticket()

    body = {"noteType": 1, "publish": 2, "title": "T", "description": "text", **fields}
    response = sim.api("POST", f"Tickets/{ticket_id}/Notes", json=body)

    assert response.status_code == 400
    assert message in response.json()["errors"][0]
    assert sim.stored(ticket_id)["notes"] == []


def test_a_note_on_an_unknown_ticket_is_not_found(sim: Sim) -> None:
    response = sim.add_note(999_999, "lost")

    assert response.status_code == 404
    assert response.json()["errors"]


def test_note_queries_filter_by_ticket_and_text_ignoring_case(sim: Sim) -> None:
    ticket_id, other = sim.new_ticket(), sim.new_ticket()
    sim.add_note(ticket_id, "unrelated")
    first = sim.add_note(ticket_id, "try one [ref MARK-1]").json()["itemId"]
    second = sim.add_note(ticket_id, "try two [ref mark-1]").json()["itemId"]
    sim.add_note(other, "[ref MARK-1] elsewhere")

    mine = sim.query(
        {
            "op": "and",
            "items": [
                _eq("ticketID", ticket_id),
                {"op": "contains", "field": "description", "value": "[REF mark-1]"},
            ],
        }
    )
    either = sim.query(
        {
            "op": "or",
            "items": [
                {"op": "beginsWith", "field": "description", "value": "unrel"},
                {"op": "endsWith", "field": "Description", "value": "elsewhere"},
            ],
        }
    )
    ranged = sim.query(_eq("ticketID", ticket_id), {"op": "gt", "field": "id", "value": first})

    assert mine.status_code == 200
    assert [n["id"] for n in mine.json()["items"]] == [first, second]
    assert mine.json()["pageDetails"] == {
        "count": 2,
        "requestCount": 500,
        "prevPageUrl": None,
        "nextPageUrl": None,
    }
    assert [n["description"] for n in either.json()["items"]] == [
        "unrelated",
        "[ref MARK-1] elsewhere",
    ]
    assert [n["id"] for n in ranged.json()["items"]] == [second]


@pytest.mark.parametrize(
    "body",
    [
        {"filter": []},
        {},
        {"filter": [{"op": "eq", "field": "nosuch", "value": 1}]},
        {"filter": [{"op": "like", "field": "description", "value": "x"}]},
        {"filter": [{"op": "contains", "field": "ticketID", "value": "1"}]},
        {"filter": [{"op": "and", "items": []}]},
        {"filter": [_eq("ticketID", "seven")]},
        {"filter": [_eq("ticketID", 1)], "maxRecords": 501},
    ],
)
def test_invalid_queries_are_refused(sim: Sim, body: dict[str, Any]) -> None:
    response = sim.api("POST", "TicketNotes/query", json=body)

    assert response.status_code == 400
    assert response.json()["errors"]


# --- tickets and status ------------------------------------------------------------------------


def test_ticket_read_back_and_an_unknown_ticket_is_a_null_item(sim: Sim) -> None:
    ticket_id = sim.new_ticket(status_id=8, summary="Printer")

    found = sim.api("GET", f"Tickets/{ticket_id}").json()["item"]
    missing = sim.api("GET", "Tickets/424242")

    assert (found["id"], found["status"], found["title"]) == (ticket_id, 8, "Printer")
    assert found["completedDate"] is None
    assert missing.status_code == 200 and missing.json() == {"item": None}


def test_status_patch_is_applied(sim: Sim) -> None:
    ticket_id = sim.new_ticket()

    response = sim.api("PATCH", "Tickets", json={"id": ticket_id, "status": 5})

    assert response.status_code == 200
    assert response.json() == {"itemId": ticket_id}
    fresh = sim.api("GET", f"Tickets/{ticket_id}").json()["item"]
    assert fresh["status"] == 5 and fresh["completedDate"] is not None


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"id": None, "status": 5}, 400),
        ({"status": 99}, 400),
        ({"status": 12345}, 400),
        ({"status": "5"}, 400),
        ({"status": 5, "title": "x"}, 400),
        ({"id": 424242, "status": 5}, 404),
    ],
)
def test_invalid_status_patches_are_refused(sim: Sim, body: dict[str, Any], status: int) -> None:
    ticket_id = sim.new_ticket()

    response = sim.api("PATCH", "Tickets", json={"id": ticket_id, **body})

    assert response.status_code == status
    assert response.json()["errors"]
    assert sim.stored(ticket_id)["status"] == 1


# --- thread limit -------------------------------------------------------------------------------


def _in_flight(sim: Sim, endpoint: str, count: int) -> bool:
    return sim.control("GET", "threads").json()["peaks"].get(endpoint) == count


def test_a_fourth_request_in_flight_on_an_endpoint_is_refused_with_429(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    sim.fault(kind="slow", delay=1.5, method="GET", path_contains="/Tickets/", times=3)
    url = f"{sim.zone}/V1.0/Tickets/{ticket_id}"
    with ThreadPoolExecutor(3) as pool:  # a session each: a Session is not thread-safe
        slow = [pool.submit(requests.get, url, headers=HEADERS, timeout=5) for _ in range(3)]
        wait_until(lambda: _in_flight(sim, "Tickets", 3), timeout=5)

        fourth = sim.api("GET", f"Tickets/{ticket_id}")
        other_endpoint = sim.query(_eq("ticketID", ticket_id))
        discovery = sim.discover()  # ZoneInformation is not thread-limited

        answers = [future.result() for future in slow]
    after = sim.api("GET", f"Tickets/{ticket_id}")

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert fourth.status_code == 429
    assert "thread threshold of 3 threads" in fourth.json()["errors"][0]
    assert (other_endpoint.status_code, discovery.status_code) == (200, 200)
    assert after.status_code == 200
    assert sim.control("GET", "threads").json() == {
        "limit": 3,
        "peaks": {"Tickets": 3, "TicketNotes": 1},
    }
    logged = [e["status"] for e in sim.control("GET", "requests").json() if e["ticket_id"]]
    assert logged.count(429) == 1  # answered and logged like any vendor call


def test_thread_limits_count_per_integration_code(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    sim.fault(kind="slow", delay=1.5, method="GET", path_contains="/Tickets/", times=4)
    url = f"{sim.zone}/V1.0/Tickets/{ticket_id}"
    other_code = {**HEADERS, "ApiIntegrationCode": "ANOTHER-INTEGRATION"}
    with ThreadPoolExecutor(4) as pool:
        ours = [pool.submit(requests.get, url, headers=HEADERS, timeout=5) for _ in range(3)]
        wait_until(lambda: _in_flight(sim, "Tickets", 3), timeout=5)
        theirs = pool.submit(requests.get, url, headers=other_code, timeout=5).result()

    assert [f.result().status_code for f in ours] == [200, 200, 200]
    assert theirs.status_code == 401  # not refused for threads: refused for its wrong code


def test_a_reset_forgets_the_peaks(sim: Sim) -> None:
    sim.api("GET", f"Tickets/{sim.new_ticket()}")
    assert sim.control("GET", "threads").json()["peaks"] == {"Tickets": 1}
    sim.control("POST", "reset")
    assert sim.control("GET", "threads").json() == {"limit": 3, "peaks": {}}


# --- faults ------------------------------------------------------------------------------------


def test_rate_limit_fault_answers_429_with_retry_after_once(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    sim.fault(kind="rate_limit", ticket_id=ticket_id, retry_after=7)

    limited = sim.add_note(ticket_id, "first try")
    retried = sim.add_note(ticket_id, "second try")

    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7"
    assert limited.json()["errors"]
    assert retried.status_code == 200
    assert [n["description"] for n in sim.stored(ticket_id)["notes"]] == ["second try"]


def test_faults_find_the_ticket_in_patch_bodies_and_note_queries(sim: Sim) -> None:
    target, bystander = sim.new_ticket(), sim.new_ticket()
    sim.fault(kind="server_error", status=503, ticket_id=target, times=-1)

    assert sim.api("PATCH", "Tickets", json={"id": bystander, "status": 8}).status_code == 200
    assert sim.api("PATCH", "Tickets", json={"id": target, "status": 8}).status_code == 503
    assert sim.query(_eq("ticketID", bystander)).status_code == 200
    wrapped = {"op": "and", "items": [_eq("ticketID", target)]}
    assert sim.query(wrapped).status_code == 503
    assert sim.api("GET", f"Tickets/{target}").status_code == 503
    assert sim.api("GET", "Tickets/entityInformation/fields").status_code == 200


def test_faults_are_scoped_by_method_and_path_and_reach_discovery(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    sim.fault(kind="rate_limit", path_contains="ZoneInformation")
    sim.fault(kind="server_error", method="PATCH", times=-1)

    assert sim.discover().status_code == 429
    assert sim.discover().status_code == 200
    assert sim.api("GET", f"Tickets/{ticket_id}").status_code == 200
    assert sim.api("PATCH", "Tickets", json={"id": ticket_id, "status": 8}).status_code == 500
    assert sim.control("DELETE", "faults").status_code == 204
    assert sim.api("PATCH", "Tickets", json={"id": ticket_id, "status": 8}).status_code == 200


def test_slow_fault_delays_then_answers_normally(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    sim.fault(kind="slow", delay=0.25, ticket_id=ticket_id)

    started = time.monotonic()
    response = sim.api("GET", f"Tickets/{ticket_id}")

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.2


def test_status_not_applied_is_only_revealed_by_a_fresh_get(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    sim.fault(kind="status_not_applied", ticket_id=ticket_id)

    # A note POST does not use up a fault meant for status changes.
    assert sim.add_note(ticket_id, "resolution").status_code == 200
    patched = sim.api("PATCH", "Tickets", json={"id": ticket_id, "status": 5})
    fresh = sim.api("GET", f"Tickets/{ticket_id}").json()["item"]
    retried = sim.api("PATCH", "Tickets", json={"id": ticket_id, "status": 5})

    assert patched.status_code == 200 and patched.json() == {"itemId": ticket_id}
    assert fresh["status"] == 1
    assert retried.status_code == 200
    assert sim.api("GET", f"Tickets/{ticket_id}").json()["item"]["status"] == 5


def test_drop_after_store_stores_the_note_but_sends_no_response(
    sim: Sim, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    ticket_id = sim.new_ticket()
    sim.fault(kind="drop_after_store", ticket_id=ticket_id)

    with caplog.at_level(logging.WARNING), connection_dropped():
        sim.add_note(ticket_id, "stored but unanswered")

    assert [n["description"] for n in sim.stored(ticket_id)["notes"]] == ["stored but unanswered"]
    assert not simulator_warnings(caplog)
    assert "Traceback" not in capsys.readouterr().err
    assert sim.add_note(ticket_id, "next call is answered").status_code == 200


def test_drop_after_store_applies_a_status_change_and_skips_refused_writes(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    sim.fault(kind="drop_after_store", ticket_id=ticket_id, method="PATCH")

    refused = sim.api("PATCH", "Tickets", json={"id": ticket_id, "status": 99})
    with pytest.raises(requests.ConnectionError):
        sim.api("PATCH", "Tickets", json={"id": ticket_id, "status": 11})

    assert refused.status_code == 400
    assert sim.api("GET", f"Tickets/{ticket_id}").json()["item"]["status"] == 11


def test_fault_times_run_out_and_faults_can_be_removed(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    path = f"Tickets/{ticket_id}"
    sim.fault(kind="server_error", ticket_id=ticket_id, times=2)

    assert [sim.api("GET", path).status_code for _ in range(3)] == [500, 500, 200]
    assert sim.control("GET", "faults").json()[0]["times"] == 0
    endless = sim.fault(kind="server_error", status=502, ticket_id=ticket_id, times=-1)
    assert [sim.api("GET", path).status_code for _ in range(2)] == [502, 502]
    assert sim.control("DELETE", f"faults/{endless}").status_code == 204
    assert sim.api("GET", path).status_code == 200
    missing = sim.control("DELETE", f"faults/{endless}")
    assert missing.status_code == 404 and missing.json()["errors"]


@pytest.mark.parametrize("spec", INVALID_FAULT_SPECS)
def test_invalid_fault_specs_are_refused(sim: Sim, spec: dict[str, Any]) -> None:
    response = sim.control("POST", "faults", json=spec)

    assert response.status_code == 400
    assert response.json()["errors"]
    assert sim.control("GET", "faults").json() == []


# --- control API -------------------------------------------------------------------------------


def test_request_log_is_per_ticket_and_never_holds_secrets(sim: Sim) -> None:
    ticket_id, other = sim.new_ticket(), sim.new_ticket()
    sim.discover()
    sim.add_note(ticket_id, "logged")
    sim.query(_eq("ticketID", ticket_id))
    sim.add_note(other, "elsewhere")

    response = sim.control("GET", "requests", params={"ticket_id": ticket_id})
    everything = sim.control("GET", "requests")

    log = response.json()
    assert [(r["method"], r["status"]) for r in log] == [("POST", 200), ("POST", 200)]
    assert log[0]["path"] == f"/atservicesrest/V1.0/Tickets/{ticket_id}/Notes"
    assert log[0]["body"]["description"] == "logged"
    assert log[0]["headers"]["Username"] == USERNAME
    assert log[0]["auth_headers"] == ["Apiintegrationcode", "Secret"]
    assert {h.lower() for r in log for h in r["headers"]}.isdisjoint(
        {"secret", "apiintegrationcode"}
    )
    assert SECRET not in everything.text and INTEGRATION_CODE not in everything.text
    assert everything.json()[0]["query"] == {"user": USERNAME}
    assert everything.json()[0]["auth_headers"] == []
    assert sim.control("GET", "requests", params={"ticket_id": "x"}).status_code == 400


def test_control_tickets_and_reset(sim: Sim) -> None:
    created = sim.control("POST", "tickets", json={"status_id": 11, "summary": "S"})
    ticket_id = created.json()["id"]
    sim.add_note(ticket_id, "kept until reset")
    sim.fault(kind="rate_limit", times=-1, path_contains="/nothing")
    sim.control("PUT", "zone", json={"prefix": "ws9"})

    assert created.status_code == 201
    assert (created.json()["status"], created.json()["title"]) == (11, "S")
    assert [n["description"] for n in sim.stored(ticket_id)["notes"]] == ["kept until reset"]
    assert sim.control("POST", "tickets", json={"status_id": 99}).status_code == 400
    assert sim.control("POST", "tickets", json={"board_id": 1}).status_code == 400
    assert sim.control("GET", "tickets/424242").status_code == 404

    assert sim.control("POST", "reset").status_code == 204
    assert sim.control("GET", f"tickets/{ticket_id}").status_code == 404
    assert sim.control("GET", "faults").json() == []
    assert sim.control("GET", "requests").json() == []
    assert sim.discover().json()["url"] == f"{sim.url}/atservicesrest/"
    assert sim.new_ticket() > ticket_id


def test_module_runs_in_the_foreground_and_announces_its_url() -> None:
    url, zone = run_module(
        "writeback_simulators.autotask",
        lambda url: requests.get(
            f"{url}/atservicesrest/v1.0/ZoneInformation", params={"user": USERNAME}, timeout=5
        ),
    )

    assert url.startswith("http://127.0.0.1:")
    assert zone["url"] == f"{url}/atservicesrest/"
