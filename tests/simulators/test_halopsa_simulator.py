"""The HaloPSA simulator over real HTTP: OAuth tokens and their expiry, actions, statuses, status
upserts, the control API and injected faults."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from tests.simulators.conftest import (
    PsaSimClient,
    connection_dropped,
    run_module,
    simulator_fixtures,
)
from writeback_simulators.halopsa import CLIENT_ID, CLIENT_SECRET, create_app

FORM = {
    "grant_type": "client_credentials",
    "client_id": CLIENT_ID,
    "client_secret": CLIENT_SECRET,
    "scope": "all",
}


class Sim(PsaSimClient):
    """A token, vendor calls with it, control calls."""

    def __init__(self, url: str, session: requests.Session) -> None:
        super().__init__(url, session)
        self._token: str | None = None

    def token(self, **form: str) -> requests.Response:
        tenant = form.pop("tenant", None)
        return self.session.post(
            f"{self.url}/auth/token",
            data={**FORM, **form},
            params={"tenant": tenant} if tenant is not None else None,
            timeout=5,
        )

    @property
    def bearer(self) -> str:
        if self._token is None:
            self._token = self.token().json()["access_token"]
        return self._token

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        if "headers" not in kwargs:
            kwargs["headers"] = {"Authorization": f"Bearer {self.bearer}"}
        return self.session.request(method, f"{self.url}/api/{path}", timeout=5, **kwargs)

    def add_action(self, ticket_id: int, note: str, **fields: Any) -> requests.Response:
        return self.api("POST", "Actions", json=[{"ticket_id": ticket_id, "note": note, **fields}])

    def set_status(self, ticket_id: int, status_id: Any) -> requests.Response:
        return self.api("POST", "Tickets", json=[{"id": ticket_id, "status_id": status_id}])


server, sim = simulator_fixtures(create_app, Sim)


# --- OAuth -------------------------------------------------------------------------------------


def test_client_credentials_give_a_bearer_token(sim: Sim) -> None:
    response = sim.token()
    tenant = sim.token(tenant="acme")

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == "all" and len(body["access_token"]) > 20
    assert response.headers["Cache-Control"] == "no-store"
    assert tenant.status_code == 200
    assert tenant.json()["access_token"] != body["access_token"]


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"client_secret": "wrong"}, "invalid_client"),
        ({"client_id": "someone-else"}, "invalid_client"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({"scope": "all admin"}, "invalid_scope"),
        ({"tenant": "globex"}, "invalid_request"),
    ],
)
def test_bad_token_requests_are_refused(sim: Sim, form: dict[str, str], error: str) -> None:
    response = sim.token(**form)

    assert response.status_code == 400
    assert response.json()["error"] == error
    assert "access_token" not in response.json()


def test_an_unknown_tenant_is_named(sim: Sim) -> None:
    assert "tenant" in sim.token(tenant="globex").json()["error_description"]


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic eDp5"])
def test_the_api_needs_a_live_bearer_token(sim: Sim, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}

    response = sim.api("GET", "Status", headers=headers)

    assert response.status_code == 401
    assert response.content == b""
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_tokens_expire_after_their_lifetime_and_can_be_revoked(sim: Sim) -> None:
    assert sim.control("PUT", "tokens", json={"lifetime": 0.2}).json() == {"lifetime": 0.2}
    short = sim.token().json()
    assert short["expires_in"] == 0.2
    auth = {"Authorization": f"Bearer {short['access_token']}"}
    assert sim.api("GET", "Status", headers=auth).status_code == 200
    time.sleep(0.3)
    assert sim.api("GET", "Status", headers=auth).status_code == 401

    assert sim.control("PUT", "tokens", json={"lifetime": 60}).status_code == 200
    assert sim.api("GET", "Status").status_code == 200
    assert sim.control("DELETE", "tokens").status_code == 204
    assert sim.api("GET", "Status").status_code == 401


@pytest.mark.parametrize("body", [{"lifetime": 0}, {"lifetime": "long"}, {"ttl": 5}, {}])
def test_invalid_token_lifetimes_are_refused(sim: Sim, body: dict[str, Any]) -> None:
    response = sim.control("PUT", "tokens", json=body)

    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/plain")


# --- statuses and tickets ----------------------------------------------------------------------


def test_statuses_are_global_active_only_and_carry_no_inactive_flag(sim: Sim) -> None:
    statuses = {s["id"]: s for s in sim.api("GET", "Status").json()}
    still_open = sim.api("GET", "Status", params={"excludeclosed": "true"}).json()

    assert {i: s["name"] for i, s in statuses.items()} == {
        1: "New",
        2: "In Progress",
        4: "Waiting on User",
        9: "Closed",
        21: "Escalated",
    }
    assert all("inactive" not in s for s in statuses.values())
    assert sorted(s["id"] for s in still_open) == [1, 2, 4, 21]


def test_validation_errors_are_json_keyed_by_the_field_at_fault(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    inactive = sim.set_status(ticket_id, 30)
    no_ticket = sim.api("POST", "Actions", json=[{"note": "x"}])
    second = sim.api(
        "POST",
        "Actions",
        json=[{"ticket_id": ticket_id, "note": "x"}, {"ticket_id": ticket_id, "note": 1}],
    )

    assert inactive.status_code == 400 and list(inactive.json()) == ["[0].status_id"]
    assert no_ticket.json() == {"[0].ticket_id": "ticket_id is required"}
    assert list(second.json()) == ["[1].note"]


def test_authinfo_names_the_auth_server_and_can_be_changed_or_removed(sim: Sim) -> None:
    assert sim.session.get(f"{sim.url}/api/authinfo", timeout=5).json() == {
        "auth_url": f"{sim.url}/auth",
        "tenant_id": "",
    }
    sim.control(
        "PUT", "authinfo", json={"auth_url": "https://auth.example/auth", "tenant_id": "acme"}
    )
    assert sim.session.get(f"{sim.url}/api/authinfo", timeout=5).json() == {
        "auth_url": "https://auth.example/auth",
        "tenant_id": "acme",
    }
    sim.control("PUT", "authinfo", json={})
    assert sim.session.get(f"{sim.url}/api/authinfo", timeout=5).status_code == 404


def test_action_lists_carry_note_html_only_when_asked(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    sim.add_action(ticket_id, "hello")
    plain = sim.api("GET", "Actions", params={"ticket_id": ticket_id}).json()["actions"]
    rich = sim.api(
        "GET", "Actions", params={"ticket_id": ticket_id, "includehtmlnote": "true"}
    ).json()["actions"]
    assert "note_html" not in plain[0] and rich[0]["note_html"] == "hello"


def test_ticket_read_back_and_an_unknown_ticket_is_not_found(sim: Sim) -> None:
    ticket_id = sim.new_ticket(status_id=2, summary="Printer")

    ticket = sim.api("GET", f"Tickets/{ticket_id}").json()
    missing = sim.api("GET", "Tickets/424242")

    assert (ticket["id"], ticket["status_id"], ticket["summary"]) == (ticket_id, 2, "Printer")
    assert ticket["dateclosed"] is None
    assert missing.status_code == 404
    assert "424242" in missing.text


def test_a_status_upsert_is_applied(sim: Sim) -> None:
    ticket_id = sim.new_ticket()

    response = sim.set_status(ticket_id, 9)

    assert response.status_code == 200
    assert (response.json()["id"], response.json()["status_id"]) == (ticket_id, 9)
    fresh = sim.api("GET", f"Tickets/{ticket_id}").json()
    assert fresh["status_id"] == 9 and fresh["dateclosed"] is not None


@pytest.mark.parametrize(
    "body",
    [
        [{"id": "TICKET", "status_id": 30}],
        [{"id": "TICKET", "status_id": 77}],
        [{"id": "TICKET", "status_id": "9"}],
        [{"id": "TICKET", "status_id": 9, "summary": "x"}],
        [{"id": 424242, "status_id": 9}],
        [{"status_id": 9}],
        {"id": "TICKET", "status_id": 9},
        [],
    ],
)
def test_invalid_status_upserts_are_refused(sim: Sim, body: Any) -> None:
    ticket_id = sim.new_ticket()

    def fill(item: Any) -> Any:
        return {k: ticket_id if v == "TICKET" else v for k, v in item.items()}

    filled = [fill(i) for i in body] if isinstance(body, list) else fill(body)
    response = sim.api("POST", "Tickets", json=filled)

    assert response.status_code == 400
    assert response.text
    assert sim.stored(ticket_id)["status_id"] == 1


# --- actions -----------------------------------------------------------------------------------


def test_an_action_is_stored_with_its_visibility_and_html(sim: Sim) -> None:
    ticket_id = sim.new_ticket()

    created = sim.add_action(ticket_id, "Fixed <it>\nreally", hiddenfromuser=True, outcome="Note")
    from_html = sim.api(
        "POST", "Actions", json=[{"ticket_id": ticket_id, "note_html": "<p>a &amp; b</p>"}]
    )

    assert created.status_code == 200
    action = created.json()
    assert (action["id"], action["ticket_id"], action["outcome"]) == (1, ticket_id, "Note")
    assert action["hiddenfromuser"] is True and action["sendemail"] is False
    assert action["note"] == "Fixed <it>\nreally"
    assert action["note_html"] == "Fixed &lt;it&gt;<br>really"
    assert from_html.json()["id"] == 2 and from_html.json()["note"] == "a & b"
    assert from_html.json()["hiddenfromuser"] is False
    assert [a["id"] for a in sim.stored(ticket_id)["notes"]] == [1, 2]
    assert sim.add_action(sim.new_ticket(), "other ticket").json()["id"] == 1


def test_several_actions_are_answered_with_an_array(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    items = [{"ticket_id": ticket_id, "note": "one"}, {"ticket_id": ticket_id, "note": "two"}]

    response = sim.api("POST", "Actions", json=items)

    assert [a["note"] for a in response.json()] == ["one", "two"]


@pytest.mark.parametrize(
    ("item", "status"),
    [
        ({"note": ""}, 400),
        ({"note": None}, 400),
        ({"hiddenfromuser": "yes"}, 400),
        ({"new_status": 9}, 400),
        ({"outcome_id": "2"}, 400),
        ({"ticket_id": 424242}, 404),
    ],
)
def test_invalid_actions_are_refused(sim: Sim, item: dict[str, Any], status: int) -> None:
    ticket_id = sim.new_ticket()

    response = sim.api("POST", "Actions", json=[{"ticket_id": ticket_id, "note": "x", **item}])
    not_an_array = sim.api("POST", "Actions", json={"ticket_id": ticket_id, "note": "x"})

    assert response.status_code == status
    assert not_an_array.status_code == 400
    assert sim.stored(ticket_id)["notes"] == []


def test_actions_are_listed_per_ticket_counted_and_paged(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    for n in range(5):
        sim.add_action(ticket_id, f"note {n}")
    sim.add_action(sim.new_ticket(), "elsewhere")

    def notes(**params: Any) -> list[str]:
        response = sim.api("GET", "Actions", params={"ticket_id": ticket_id, **params})
        assert response.status_code == 200, response.text
        return [a["note"] for a in response.json()["actions"]]

    everything = sim.api("GET", "Actions", params={"ticket_id": ticket_id}).json()
    assert everything["record_count"] == 5
    assert notes() == [f"note {n}" for n in range(5)]
    assert notes(count=2) == ["note 0", "note 1"]
    assert notes(pageinate="true", page_size=2, page_no=3) == ["note 4"]
    paged = sim.api(
        "GET", "Actions", params={"ticket_id": ticket_id, "pageinate": "true", "page_size": 2}
    ).json()
    assert (paged["page_no"], paged["page_size"], paged["record_count"]) == (1, 2, 5)
    assert sim.api("GET", "Actions", params={"ticket_id": 424242}).json()["actions"] == []
    assert sim.api("GET", "Actions").status_code == 400
    assert sim.api("GET", "Actions", params={"ticket_id": ticket_id, "count": 0}).status_code == 400


# --- faults ------------------------------------------------------------------------------------


def test_faults_find_the_ticket_in_queries_and_posted_items(sim: Sim) -> None:
    target, bystander = sim.new_ticket(), sim.new_ticket()
    sim.fault(kind="server_error", status=502, ticket_id=target, times=-1)

    assert sim.add_action(bystander, "fine").status_code == 200
    assert sim.add_action(target, "fails").status_code == 502
    assert sim.api("GET", "Actions", params={"ticket_id": target}).status_code == 502
    assert sim.set_status(target, 2).status_code == 502
    assert sim.api("GET", f"Tickets/{target}").status_code == 502
    assert sim.api("GET", "Status").status_code == 200


def test_a_rate_limit_on_the_token_endpoint(sim: Sim) -> None:
    sim.fault(kind="rate_limit", path_contains="/auth/token", retry_after=3)

    limited = sim.token()

    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "3"
    assert sim.token().status_code == 200


def test_status_not_applied_is_only_revealed_by_a_fresh_get(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    sim.fault(kind="status_not_applied", ticket_id=ticket_id)

    assert sim.add_action(ticket_id, "resolution").status_code == 200
    upserted = sim.set_status(ticket_id, 9)
    fresh = sim.api("GET", f"Tickets/{ticket_id}").json()

    assert upserted.status_code == 200 and upserted.json()["status_id"] == 9
    assert fresh["status_id"] == 1
    assert sim.set_status(ticket_id, 9).status_code == 200
    assert sim.api("GET", f"Tickets/{ticket_id}").json()["status_id"] == 9


def test_drop_after_store_keeps_the_action_and_the_status(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    sim.fault(kind="drop_after_store", ticket_id=ticket_id, path_contains="/api/Actions")
    sim.fault(kind="drop_after_store", ticket_id=ticket_id, path_contains="/api/Tickets")

    with connection_dropped():
        sim.add_action(ticket_id, "stored but unanswered")
    with connection_dropped():
        sim.set_status(ticket_id, 21)

    stored = sim.stored(ticket_id)
    assert [a["note"] for a in stored["notes"]] == ["stored but unanswered"]
    assert stored["status_id"] == 21


# --- control API -------------------------------------------------------------------------------


def test_request_log_never_holds_secrets_or_tokens(sim: Sim) -> None:
    ticket_id = sim.new_ticket()
    token = sim.bearer
    sim.add_action(ticket_id, "logged", hiddenfromuser=True)
    sim.api("GET", "Actions", params={"ticket_id": ticket_id, "access_token": "leak"})

    everything = sim.control("GET", "requests")
    mine = sim.control("GET", "requests", params={"ticket_id": ticket_id}).json()

    assert CLIENT_SECRET not in everything.text and token not in everything.text
    assert "leak" not in everything.text
    token_call = everything.json()[0]
    assert (token_call["path"], token_call["body"], token_call["status"]) == (
        "/auth/token",
        None,
        200,
    )
    assert [(r["method"], r["path"]) for r in mine] == [
        ("POST", "/api/Actions"),
        ("GET", "/api/Actions"),
    ]
    assert mine[0]["body"] == [{"ticket_id": ticket_id, "note": "logged", "hiddenfromuser": True}]
    assert mine[0]["auth_headers"] == ["Authorization"]
    assert mine[1]["query"]["access_token"] == "[redacted]"


def test_control_tickets_and_reset(sim: Sim) -> None:
    created = sim.control("POST", "tickets", json={"status_id": 21, "summary": "S"})
    ticket_id = created.json()["id"]
    sim.add_action(ticket_id, "kept until reset")
    sim.fault(kind="rate_limit", times=-1, path_contains="/nothing")
    sim.control("PUT", "tokens", json={"lifetime": 5})

    assert created.status_code == 201
    assert (created.json()["status_id"], created.json()["summary"]) == (21, "S")
    assert sim.control("POST", "tickets", json={"status_id": 30}).status_code == 400
    assert sim.control("POST", "tickets", json={"summary": "x" * 251}).status_code == 400
    assert sim.control("GET", "tickets/424242").status_code == 404

    assert sim.control("POST", "reset").status_code == 204
    assert sim.control("GET", f"tickets/{ticket_id}").status_code == 404
    assert sim.control("GET", "faults").json() == []
    assert sim.control("GET", "requests").json() == []
    assert sim.api("GET", "Status").status_code == 401  # tokens are gone
    assert sim.token().json()["expires_in"] == 3600
    assert sim.new_ticket() > ticket_id


def test_module_runs_in_the_foreground_and_announces_its_url() -> None:
    url, token = run_module(
        "writeback_simulators.halopsa",
        lambda url: requests.post(f"{url}/auth/token", data=FORM, timeout=5),
    )

    assert url.startswith("http://127.0.0.1:")
    assert token["token_type"] == "Bearer"
