"""The ConnectWise simulator over real HTTP: vendor behaviour, control API and injected faults."""

from __future__ import annotations

import logging
import re
import time
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
from writeback_simulators.connectwise import create_app

CLIENT_ID = "0f6a8d0e-4a4e-4a36-9c57-1d2b4b8f6a10"
AUTH = ("ACME+pub-key", "priv-key")
DISPLAY_FLAGS = ("detailDescriptionFlag", "internalAnalysisFlag", "resolutionFlag")
NO_DISPLAY_FLAG = {
    "code": "InvalidObject",
    "message": "serviceNote object is invalid",
    "errors": [
        {
            "code": "InvalidObject",
            "message": "Please choose where to display the notes in order to save this record.",
            "resource": "serviceNote",
        }
    ],
}


class Sim(PsaSimClient):
    """Vendor calls with credentials, to the codebase the server starts with; control calls."""

    def __init__(self, url: str, session: requests.Session) -> None:
        super().__init__(url, session)
        self.codebase = "v2025_1/"

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("auth", AUTH)
        kwargs.setdefault("headers", {"clientId": CLIENT_ID})
        url = f"{self.url}/{self.codebase}apis/3.0/{path}"
        return self.session.request(method, url, timeout=5, **kwargs)

    def add_note(self, ticket_id: int, text: str, **flags: bool) -> requests.Response:
        body = {"text": text, **(flags or {"internalAnalysisFlag": True})}
        return self.api("POST", f"service/tickets/{ticket_id}/notes", json=body)


server, sim = simulator_fixtures(create_app, Sim)


def _status_patch(status_id: int) -> list[dict[str, Any]]:
    return [{"op": "replace", "path": "status", "value": {"id": status_id}}]


# --- discovery and auth ------------------------------------------------------------------------


def test_companyinfo_reports_codebase_for_known_company_only(sim: Sim) -> None:
    known = sim.session.get(f"{sim.url}/login/companyinfo/ACME", timeout=5)
    unknown = sim.session.get(f"{sim.url}/login/companyinfo/NOPE", timeout=5)

    assert known.status_code == 200
    info = known.json()
    assert info["Codebase"] == "v2025_1/"
    assert info["CompanyID"] == "ACME"
    assert info["IsCloud"] is False
    assert {"CompanyName", "VersionCode", "VersionNumber", "SiteUrl"} <= info.keys()
    # ConnectWise answers an unknown company with 200 and a JSON null.
    assert unknown.status_code == 200 and unknown.content.strip() == b"null"


def test_bad_credentials_and_missing_client_id_are_told_apart(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    path = f"service/tickets/{ticket_id}"

    wrong_key = sim.api("GET", path, auth=("ACME+pub-key", "wrong"))
    wrong_company = sim.api("GET", path, auth=("OTHER+pub-key", "priv-key"))
    no_auth = sim.api("GET", path, auth=None)
    no_client_id = sim.api("GET", path, headers={})

    for response in (wrong_key, wrong_company, no_auth, no_client_id):
        assert response.status_code == 401
        assert response.json()["code"] == "Unauthorized"
    assert "clientId" in no_client_id.json()["message"]
    assert "clientId" not in wrong_key.json()["message"]
    assert sim.api("GET", path).status_code == 200


# --- notes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", DISPLAY_FLAGS)
def test_note_is_created_with_each_display_flag(sim: Sim, flag: str) -> None:
    ticket_id = sim.new_ticket()

    response = sim.api(
        "POST",
        f"service/tickets/{ticket_id}/notes",
        json={"text": "Fixed **it**", flag: True, "processNotifications": False},
    )

    assert response.status_code == 201
    note = response.json()
    assert note["ticketId"] == ticket_id
    assert note["text"] == "Fixed **it**"
    assert note[flag] is True
    assert [f for f in DISPLAY_FLAGS if note[f]] == [flag]
    assert note["processNotifications"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", note["dateCreated"])
    assert note["createdBy"] and note["_info"]["lastUpdated"]
    read_back = sim.api("GET", f"service/tickets/{ticket_id}/notes/{note['id']}")
    assert read_back.json() == note


def test_note_ids_increase_across_tickets(sim: Sim) -> None:
    first = sim.add_note(sim.new_ticket(), "one").json()["id"]
    second = sim.add_note(sim.new_ticket(), "two").json()["id"]

    assert second > first


def test_note_without_display_flag_is_rejected(sim: Sim) -> None:
    ticket_id = sim.new_ticket()

    response = sim.api(
        "POST", f"service/tickets/{ticket_id}/notes", json={"text": "x", "issueFlag": True}
    )

    assert response.status_code == 400
    assert response.json() == NO_DISPLAY_FLAG
    assert sim.stored(ticket_id)["notes"] == []


@pytest.mark.parametrize("body", [{"resolutionFlag": True}, {"text": "", "resolutionFlag": True}])
def test_note_without_text_is_rejected(sim: Sim, body: dict[str, Any]) -> None:
    ticket_id = sim.new_ticket()

    response = sim.api("POST", f"service/tickets/{ticket_id}/notes", json=body)

    assert response.status_code == 400
    error = response.json()
    assert error["code"] == "InvalidObject"
    assert error["errors"][0]["field"] == "text"


def test_non_json_body_is_rejected(sim: Sim) -> None:
    ticket_id = sim.new_ticket()

    response = sim.api(
        "POST",
        f"service/tickets/{ticket_id}/notes",
        data="text=hello",
        headers={"clientId": CLIENT_ID, "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["code"] == "InvalidObject"


def test_note_on_unknown_ticket_is_not_found(sim: Sim) -> None:
    response = sim.add_note(999_999, "lost")

    assert response.status_code == 404
    assert response.json()["message"] == "Ticket record not found"


def test_find_note_by_marker_newest_first(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    other_ticket = sim.new_ticket()
    sim.add_note(ticket_id, "unrelated")
    older = sim.add_note(ticket_id, 'First try [wb:MARK-1] said "hi"').json()["id"]
    newer = sim.add_note(ticket_id, "retry [wb:mark-1]", resolutionFlag=True).json()["id"]
    sim.add_note(other_ticket, "[wb:MARK-1] elsewhere")

    found = sim.api(
        "GET",
        f"service/tickets/{ticket_id}/notes",
        params={"conditions": 'text like "%[wb:MARK-1]%"', "orderBy": "id desc"},
    )
    quoted = sim.api(
        "GET",
        f"service/tickets/{ticket_id}/notes",
        params={"conditions": r'text like "%said \"hi\"%"'},
    )

    assert found.status_code == 200
    assert [n["id"] for n in found.json()] == [newer, older]
    assert [n["id"] for n in quoted.json()] == [older]


def test_conditions_on_id_combine_with_and(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    ids = [sim.add_note(ticket_id, f"note {i}").json()["id"] for i in range(4)]
    notes = f"service/tickets/{ticket_id}/notes"

    def find(conditions: str) -> list[int]:
        response = sim.api("GET", notes, params={"conditions": conditions})
        assert response.status_code == 200, response.text
        return [n["id"] for n in response.json()]

    assert find(f"id > {ids[0]} and id < {ids[3]}") == ids[1:3]
    assert find(f"id = {ids[2]}") == [ids[2]]
    assert find(f'id > {ids[1]} AND text like "%3"') == [ids[3]]
    count = sim.api("GET", f"{notes}/count", params={"conditions": f"id > {ids[0]}"})
    assert count.json() == {"count": 3}


@pytest.mark.parametrize(
    "conditions", ['text like "%unterminated', "nosuchfield = 1", 'id > "x"', "id >", "text ~ 1"]
)
def test_unparseable_conditions_are_rejected(sim: Sim, conditions: str) -> None:
    ticket_id = sim.new_ticket()

    response = sim.api(
        "GET", f"service/tickets/{ticket_id}/notes", params={"conditions": conditions}
    )

    assert response.status_code == 400
    assert response.json()["code"] == "ApiFindCondition"


def test_notes_are_paged_with_link_header(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    ids = [sim.add_note(ticket_id, f"note {i}").json()["id"] for i in range(5)]
    notes = f"service/tickets/{ticket_id}/notes"

    def page(number: int) -> requests.Response:
        return sim.api("GET", notes, params={"page": number, "pageSize": 2, "orderBy": "id asc"})

    first, middle, last = page(1), page(2), page(3)

    assert [n["id"] for n in first.json()] == ids[0:2]
    assert [n["id"] for n in middle.json()] == ids[2:4]
    assert [n["id"] for n in last.json()] == ids[4:]
    assert set(first.links) == {"next", "last"}
    assert set(middle.links) == {"first", "prev", "next", "last"}
    assert set(last.links) == {"first", "prev"}
    next_url = first.links["next"]["url"]
    assert next_url.startswith(f"{sim.url}/v2025_1/apis/3.0/{notes}?")
    assert "page=2" in next_url and "pageSize=2" in next_url
    assert "page=3" in first.links["last"]["url"]
    followed = sim.session.get(next_url, auth=AUTH, headers={"clientId": CLIENT_ID}, timeout=5)
    assert followed.json() == middle.json()
    assert "Link" not in sim.api("GET", notes).headers
    assert sim.api("GET", f"{notes}/count").json() == {"count": 5}


def test_note_of_another_ticket_is_not_found(sim: Sim) -> None:
    note_id = sim.add_note(sim.new_ticket(), "mine").json()["id"]

    response = sim.api("GET", f"service/tickets/{sim.new_ticket()}/notes/{note_id}")

    assert response.status_code == 404
    assert response.json()["code"] == "NotFound"


# --- boards and statuses -----------------------------------------------------------------------


def test_boards_and_statuses_match_the_seed(sim: Sim) -> None:
    boards = sim.api("GET", "service/boards").json()
    statuses = sim.api("GET", "service/boards/1/statuses").json()
    projects = sim.api("GET", "service/boards/21/statuses", params={"pageSize": 2})

    assert [(b["id"], b["name"], b["inactiveFlag"]) for b in boards] == [
        (1, "Help Desk", False),
        (21, "Projects", False),
        (30, "Retired Queue", True),
    ]
    by_id = {s["id"]: s for s in statuses}
    assert set(by_id) == {1, 2, 5, 42, 43, 44}
    assert by_id[1]["defaultFlag"] is True
    assert by_id[42]["closedStatus"] is True and by_id[42]["escalationStatus"] == "Resolved"
    assert by_id[43]["escalationStatus"] == "Responded"
    assert by_id[5]["inactive"] is True
    assert by_id[44]["board"] == {"id": 1, "name": "Help Desk"}
    assert [s["id"] for s in projects.json()] == [17, 18]
    assert set(projects.links) == {"next", "last"}
    assert sim.api("GET", "service/boards/99/statuses").status_code == 404


def test_successful_answers_carry_the_vendor_media_type_in_the_version_asked_for(sim: Sim) -> None:
    default = sim.api("GET", "service/boards")
    older = sim.api(
        "GET",
        "service/boards",
        headers={
            "clientId": CLIENT_ID,
            "Accept": "application/vnd.connectwise.com+json; version=2019.5",
        },
    )
    assert default.headers["Content-Type"] == (
        "application/vnd.connectwise.com+json; version=2025.8"
    )
    assert older.headers["Content-Type"].endswith("version=2019.5")


def test_note_conditions_can_be_refused_with_a_400_until_restored(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    params = {"conditions": 'text like "%x%"'}
    refuse = sim.session.put(f"{sim.url}/__sim/conditions", json={"notes": False}, timeout=5)
    assert refuse.json() == {"notes": False}
    assert sim.api("GET", f"service/tickets/{ticket_id}/notes", params=params).status_code == 400
    assert sim.api("GET", f"service/tickets/{ticket_id}/notes").status_code == 200
    sim.session.put(f"{sim.url}/__sim/conditions", json={"notes": True}, timeout=5)
    assert sim.api("GET", f"service/tickets/{ticket_id}/notes", params=params).status_code == 200


# --- ticket status -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "patch",
    [
        _status_patch(42),
        [{"op": "replace", "path": "status/id", "value": 42}],
        [{"op": "replace", "path": "/status/id", "value": 42}],
        [{"op": "replace", "path": "/status", "value": {"id": 42}}],
    ],
)
def test_status_patch_forms_are_applied(sim: Sim, patch: list[dict[str, Any]]) -> None:
    ticket_id = sim.new_ticket()

    response = sim.api("PATCH", f"service/tickets/{ticket_id}", json=patch)

    assert response.status_code == 200
    assert response.json()["status"] == {"id": 42, "name": "Resolved"}
    fresh = sim.api("GET", f"service/tickets/{ticket_id}").json()
    assert fresh["status"]["id"] == 42
    assert fresh["closedFlag"] is True
    assert fresh["board"] == {"id": 1, "name": "Help Desk"}


def test_status_from_another_board_is_rejected(sim: Sim) -> None:
    ticket_id = sim.new_ticket(board_id=21)

    response = sim.api("PATCH", f"service/tickets/{ticket_id}", json=_status_patch(42))

    assert response.status_code == 400
    assert response.json() == {
        "code": "InvalidObject",
        "message": "ticket object is invalid",
        "errors": [
            {
                "code": "NotFound",
                "message": "Service Status 42 not found for Service Board 21",
                "resource": "ticket",
                "field": "status/id",
            }
        ],
    }
    assert sim.stored(ticket_id)["status"]["id"] == 17


def test_inactive_status_is_rejected(sim: Sim) -> None:
    ticket_id = sim.new_ticket()

    response = sim.api("PATCH", f"service/tickets/{ticket_id}", json=_status_patch(5))

    assert response.status_code == 400
    error = response.json()
    assert error["code"] == "InvalidObject"
    assert error["errors"][0]["field"] == "status/id"
    assert sim.stored(ticket_id)["status"]["id"] == 1


@pytest.mark.parametrize(
    "patch",
    [
        {"op": "replace", "path": "status", "value": {"id": 42}},
        [],
        [{"op": "remove", "path": "status"}],
        [{"op": "replace", "path": "status", "value": {"name": "Resolved"}}],
        [{"op": "replace", "path": "status/id", "value": "42"}],
        [{"op": "replace", "path": "summary", "value": "x"}],
    ],
)
def test_malformed_patch_is_rejected(sim: Sim, patch: Any) -> None:
    ticket_id = sim.new_ticket()

    response = sim.api("PATCH", f"service/tickets/{ticket_id}", json=patch)

    assert response.status_code == 400
    assert response.json()["code"] == "InvalidObject"
    assert sim.stored(ticket_id)["status"]["id"] == 1


def test_unknown_ticket_and_route_give_connectwise_404(sim: Sim) -> None:
    ticket = sim.api("GET", "service/tickets/424242")
    route = sim.api("GET", "service/nothing/here")

    assert ticket.status_code == 404
    assert ticket.json() == {"code": "NotFound", "message": "Ticket record not found"}
    assert route.status_code == 404
    assert route.json()["code"] == "NotFound"


# --- faults ------------------------------------------------------------------------------------


def test_rate_limit_fault_answers_429_with_retry_after_once(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    sim.fault(kind="rate_limit", ticket_id=ticket_id, retry_after=7)

    limited = sim.add_note(ticket_id, "first try")
    retried = sim.add_note(ticket_id, "second try")

    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7"
    assert {"code", "message"} <= limited.json().keys()
    assert retried.status_code == 201
    assert [n["text"] for n in sim.stored(ticket_id)["notes"]] == ["second try"]


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_error_fault(sim: Sim, status: int) -> None:
    ticket_id = sim.new_ticket()
    sim.fault(kind="server_error", status=status, method="GET")

    failed = sim.api("GET", f"service/tickets/{ticket_id}")

    assert failed.status_code == status
    assert {"code", "message"} <= failed.json().keys()
    assert sim.api("GET", f"service/tickets/{ticket_id}").status_code == 200


def test_slow_fault_delays_then_answers_normally(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    sim.fault(kind="slow", delay=0.25, ticket_id=ticket_id)

    started = time.monotonic()
    response = sim.api("GET", f"service/tickets/{ticket_id}")
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert elapsed >= 0.2


def test_drop_after_store_stores_note_but_sends_no_response(
    sim: Sim, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    ticket_id = sim.new_ticket()
    sim.fault(kind="drop_after_store", ticket_id=ticket_id)

    with caplog.at_level(logging.WARNING), connection_dropped():
        sim.add_note(ticket_id, "stored but unanswered", resolutionFlag=True)

    notes = sim.stored(ticket_id)["notes"]
    assert [n["text"] for n in notes] == ["stored but unanswered"]
    assert notes[0]["resolutionFlag"] is True
    assert not simulator_warnings(caplog)
    assert "Traceback" not in capsys.readouterr().err
    assert sim.add_note(ticket_id, "next call is answered").status_code == 201


def test_drop_after_store_applies_status_change(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    sim.fault(kind="drop_after_store", ticket_id=ticket_id, method="PATCH")

    with pytest.raises(requests.ConnectionError):
        sim.api("PATCH", f"service/tickets/{ticket_id}", json=_status_patch(43))

    assert sim.api("GET", f"service/tickets/{ticket_id}").json()["status"]["id"] == 43


def test_drop_after_store_ignores_rejected_writes(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    sim.fault(kind="drop_after_store", ticket_id=ticket_id)

    rejected = sim.api("POST", f"service/tickets/{ticket_id}/notes", json={"text": "no flag"})
    read = sim.api("GET", f"service/tickets/{ticket_id}")

    assert rejected.status_code == 400
    assert read.status_code == 200
    assert sim.control("GET", "faults").json()[0]["times"] == 1


def test_status_not_applied_is_only_revealed_by_a_fresh_get(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    sim.fault(kind="status_not_applied", ticket_id=ticket_id)
    path = f"service/tickets/{ticket_id}"

    # A note POST does not consume a fault meant for status changes.
    assert sim.add_note(ticket_id, "resolution", resolutionFlag=True).status_code == 201
    patched = sim.api("PATCH", path, json=_status_patch(42))
    fresh = sim.api("GET", path)
    retried = sim.api("PATCH", path, json=_status_patch(42))

    assert patched.status_code == 200
    assert patched.json()["status"]["id"] == 42
    assert patched.json()["closedFlag"] is True
    assert fresh.json()["status"] == {"id": 1, "name": "New"}
    assert fresh.json()["closedFlag"] is False
    assert retried.status_code == 200
    assert sim.api("GET", path).json()["status"]["id"] == 42


def test_fault_times_run_out_and_endless_faults_last_until_removed(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    path = f"service/tickets/{ticket_id}"
    sim.fault(kind="server_error", ticket_id=ticket_id, times=2)

    codes = [sim.api("GET", path).status_code for _ in range(3)]
    assert codes == [500, 500, 200]
    assert sim.control("GET", "faults").json()[0]["times"] == 0

    endless = sim.fault(kind="server_error", status=503, ticket_id=ticket_id, times=-1)
    assert [sim.api("GET", path).status_code for _ in range(3)] == [503, 503, 503]
    assert sim.control("DELETE", f"faults/{endless}").status_code == 204
    assert sim.api("GET", path).status_code == 200
    assert sim.control("DELETE", f"faults/{endless}").status_code == 404


def test_faults_are_scoped_by_ticket_method_and_path(sim: Sim) -> None:
    target, bystander = sim.new_ticket(), sim.new_ticket()
    sim.fault(kind="server_error", ticket_id=target, times=-1, method="POST")
    sim.fault(kind="rate_limit", path_contains="/service/boards", times=-1)

    assert sim.add_note(bystander, "fine").status_code == 201
    assert sim.api("GET", f"service/tickets/{target}").status_code == 200
    assert sim.add_note(target, "fails").status_code == 500
    assert sim.api("GET", "service/boards").status_code == 429
    assert sim.control("DELETE", "faults").status_code == 204
    assert sim.add_note(target, "works now").status_code == 201


def test_faults_apply_in_creation_order(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    sim.fault(kind="server_error", status=502, ticket_id=ticket_id)
    sim.fault(kind="rate_limit", ticket_id=ticket_id)

    codes = [sim.api("GET", f"service/tickets/{ticket_id}").status_code for _ in range(3)]

    assert codes == [502, 429, 200]


@pytest.mark.parametrize("spec", INVALID_FAULT_SPECS)
def test_invalid_fault_specs_are_rejected(sim: Sim, spec: dict[str, Any]) -> None:
    response = sim.control("POST", "faults", json=spec)

    assert response.status_code == 400
    assert sim.control("GET", "faults").json() == []


# --- control API -------------------------------------------------------------------------------


def test_codebase_move_makes_old_paths_404(sim: Sim) -> None:
    ticket_id = sim.new_ticket()

    moved = sim.control("PUT", "codebase", json={"codebase": "v2025_2/"})
    old = sim.api("GET", f"service/tickets/{ticket_id}")
    info = sim.session.get(f"{sim.url}/login/companyinfo/ACME", timeout=5).json()
    sim.codebase = info["Codebase"]
    new = sim.api("GET", f"service/tickets/{ticket_id}")

    assert moved.json() == {"codebase": "v2025_2/"}
    assert old.status_code == 404
    assert old.json()["code"] == "NotFound"
    assert info["Codebase"] == "v2025_2/"
    assert new.status_code == 200


def test_request_log_is_per_ticket_and_never_holds_credentials(sim: Sim) -> None:
    ticket_id, other = sim.new_ticket(), sim.new_ticket()
    sim.add_note(ticket_id, "logged")
    sim.api("GET", f"service/tickets/{ticket_id}/notes", params={"pageSize": 5})
    sim.add_note(other, "elsewhere")

    response = sim.control("GET", "requests", params={"ticket_id": ticket_id})

    log = response.json()
    assert [(r["method"], r["status"]) for r in log] == [("POST", 201), ("GET", 200)]
    assert log[0]["body"] == {"text": "logged", "internalAnalysisFlag": True}
    assert log[0]["path"] == f"/v2025_1/apis/3.0/service/tickets/{ticket_id}/notes"
    assert log[1]["query"] == {"pageSize": "5"}
    assert log[1]["body"] is None
    assert all(r["ticket_id"] == ticket_id for r in log)
    assert not [r for r in log if r["method"] == "PATCH"]
    assert "authorization" not in {h.lower() for r in log for h in r["headers"]}
    assert "priv-key" not in response.text


def test_control_tickets_and_reset(sim: Sim) -> None:
    created = sim.control("POST", "tickets", json={"board_id": 21, "status_id": 19, "summary": "S"})
    ticket_id = created.json()["id"]
    sim.add_note(ticket_id, "kept until reset")
    sim.fault(kind="rate_limit", times=-1, path_contains="/service/boards")

    stored = sim.stored(ticket_id)
    assert created.status_code == 201
    assert stored["status"] == {"id": 19, "name": "Escalated"}
    assert stored["summary"] == "S"
    assert [n["text"] for n in stored["notes"]] == ["kept until reset"]
    assert sim.control("POST", "tickets", json={"board_id": 1, "status_id": 17}).status_code == 400

    assert sim.control("POST", "reset").status_code == 204
    assert sim.control("GET", f"tickets/{ticket_id}").status_code == 404
    assert sim.control("GET", "faults").json() == []
    assert sim.control("GET", "requests").json() == []
    assert sim.new_ticket() > ticket_id


def test_module_runs_in_the_foreground_and_announces_its_url() -> None:
    url, info = run_module(
        "writeback_simulators.connectwise",
        lambda url: requests.get(f"{url}/login/companyinfo/ACME", timeout=5),
    )

    assert url.startswith("http://127.0.0.1:")
    assert info["Codebase"] == "v2025_1/"
