"""HTTP simulator of the HaloPSA REST API, with faults switchable at runtime.

Behaviour follows HaloPSA's API documentation (and HaloAPI's client): an OAuth2
client-credentials token from
`POST /auth/token` (form `grant_type=client_credentials`, `client_id`, `client_secret`,
`scope=all`; `?tenant=` optional), then `Authorization: Bearer <token>` on `/api/...`; notes are
"actions" posted to `/api/Actions` as a JSON array (`hiddenfromuser: true` = internal only); the
status is changed by upserting `[{"id", "status_id"}]` to `/api/Tickets`; statuses are global
(`/api/Status`).

Confirmed elsewhere and modelled: `GET /api/authinfo` (no auth) names the authorisation server
`{"auth_url", "tenant_id"}` whose `/token` issues tokens (homotechsual/HaloAPI); validation 400s
are JSON keyed by the field at fault, `{"[0].ticket_id": "..."}` (n8n's HaloPSA node); statuses
carry no `inactive` flag (HaloAPI's Status.json): inactive ones are simply not listed, and
`excludeclosed=true` leaves the closed one out; action lists carry `note_html` only with
`includehtmlnote=true`.

Unconfirmed and modelled here (keep the provider tolerant of them): token errors are
`{"error", "error_description"?}` with 400 (IdentityServer style); a missing, unknown or expired
bearer token answers 401 with an empty body and `WWW-Authenticate`; other API errors are plain
text; action ids count per ticket (1, 2, ...), as the API addresses an action by ticket and id;
`/api/Actions?ticket_id=` lists all of a ticket's actions, oldest first, or one page with
`pageinate=true&page_size=&page_no=`, and `count=` keeps the first n; a posted single action is
answered with the created object (several: an array); an
upsert naming an unknown ticket id is refused (real Halo might create a ticket instead).

Seed data (restored by `POST /__sim/reset`):
  client `halo-client` / `halo-secret`; tenants: none (on-premise form) or `acme`.
  Token lifetime 3600 s.
  Statuses: 1 New, 2 In Progress, 4 Waiting on User, 9 Closed (Halo's closed status),
    21 Escalated, 30 Old (inactive: never listed, refused).
  authinfo: auth_url `{site}/auth`, tenant_id "" (the on-premise form).
  No tickets. Ticket ids start at 2000 and do not restart on reset.

Control API (no auth, JSON; errors as plain text):
  POST   /__sim/reset              seed again: tickets, actions, tokens, lifetime, faults, log; 204
  POST   /__sim/tickets            {"status_id"?, "summary"?} -> 201 Ticket
  GET    /__sim/tickets/<id>       Ticket plus "notes": [Action, ...] in stored order
  PUT    /__sim/tokens             {"lifetime": seconds} -> {"lifetime": ...} for new tokens
  DELETE /__sim/tokens             revoke every issued token -> 204
  PUT    /__sim/authinfo           {"auth_url"?, "tenant_id"?} what authinfo answers (both
                                   omitted: 404, a site without authinfo); reset restores it
  POST|GET|DELETE /__sim/faults..., GET /__sim/requests?ticket_id=   see simulators/faults.py

Faults match vendor calls (the token endpoint included, /__sim/ never) by `ticket_id` (from the
path `/api/Tickets/<id>`, the `ticket_id` query of an action list, or the ticket the items of an
`/api/Actions` or `/api/Tickets` POST name), `method` and `path_contains`. Kinds: slow,
rate_limit, server_error (see faults.py); status_not_applied (a valid status upsert answers 200
showing the new status, which is not stored); drop_after_store (a valid action POST or status
upsert is stored, then the connection is closed without an answer). Neither tokens nor the
client secret ever reach the request log.
"""

from __future__ import annotations

import html
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from writeback_simulators import faults
from writeback_simulators.server import run_cli

logger = logging.getLogger(__name__)

Json = dict[str, Any]

CLIENT_ID = "halo-client"
CLIENT_SECRET = "halo-secret"
TENANT = "acme"
DEFAULT_LIFETIME = 3600.0
_EXTENSION = "halopsa_sim"
_FIRST_TICKET_ID = 2000
_MAX_SUMMARY = 250
_MAX_PAGE_SIZE = 1000
_TICKET_IN_PATH = re.compile(r"^/api/Tickets/(\d+)$")
_TAG = re.compile(r"<[^>]+>")
_ACTION_FIELDS = frozenset(
    {"ticket_id", "note", "note_html", "hiddenfromuser", "outcome", "outcome_id", "sendemail"}
)


@dataclass(frozen=True)
class Status:
    id: int
    name: str
    sequence: int
    inactive: bool = False
    colour: str = "#2bd3c6"


STATUSES = (
    Status(1, "New", 1),
    Status(2, "In Progress", 2),
    Status(4, "Waiting on User", 3),
    Status(9, "Closed", 10, colour="#a3a3a3"),
    Status(21, "Escalated", 4, colour="#e84b4b"),
    Status(30, "Old", 20, inactive=True),
)
NEW, CLOSED = 1, 9


@dataclass(frozen=True)
class Client:
    client_id: str
    secret: str
    agent_id: int
    agent_name: str


@dataclass
class Ticket:
    id: int
    summary: str
    status_id: int
    date_occurred: datetime
    last_action: datetime
    date_closed: datetime | None = None


@dataclass(frozen=True)
class Action:
    id: int
    ticket_id: int
    note: str
    note_html: str
    hidden: bool
    outcome: str
    outcome_id: int
    send_email: bool
    who: str
    agent_id: int
    at: datetime


class ApiError(Exception):
    """An API error: plain text, or an OAuth `{"error", "error_description"}` body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        oauth_error: str | None = None,
        headers: Mapping[str, str] | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.oauth_error = oauth_error
        self.field = field  # a validation error's field: answered as {field: message}
        self.headers = dict(headers or {})


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def _now() -> datetime:
    return datetime.now(UTC)


_SEED_CLIENTS = (Client(CLIENT_ID, CLIENT_SECRET, 7, "Writeback API"),)
_SEED_TENANTS = frozenset({"", TENANT})


class SimState(faults.PsaState[Ticket, Action]):
    """All simulator state; every public method takes the lock (the server is threaded).

    A ticket's notes are its actions."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        super().__init__(_FIRST_TICKET_ID)

    def _seed(self) -> None:
        self._clients = {c.client_id: c for c in _SEED_CLIENTS}
        self._tenants = set(_SEED_TENANTS)
        self._lifetime = DEFAULT_LIFETIME
        self._tokens: dict[str, tuple[Client, float]] = {}
        self._authinfo: Json | None = {"tenant_id": ""}  # auth_url: this site's /auth
        self._statuses = {s.id: s for s in STATUSES}

    # OAuth.

    def issue_token(self, client_id: str, secret: str, tenant: str) -> Json:
        with self._lock:
            if tenant not in self._tenants:
                raise ApiError(400, f"Unknown tenant {tenant!r}", oauth_error="invalid_request")
            client = self._clients.get(client_id)
            if client is None or not secrets.compare_digest(client.secret, secret):
                raise ApiError(400, "Invalid client credentials", oauth_error="invalid_client")
            now = self._clock()
            self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}
            token = secrets.token_urlsafe(32)
            self._tokens[token] = (client, now + self._lifetime)
            lifetime = self._lifetime
        return {
            "scope": "all",
            "token_type": "Bearer",
            "access_token": token,
            "expires_in": int(lifetime) if lifetime == int(lifetime) else lifetime,
        }

    def client_for(self, token: str) -> Client | None:
        with self._lock:
            found = self._tokens.get(token)
            if found is None or found[1] <= self._clock():
                return None
            return found[0]

    def set_lifetime(self, seconds: float) -> None:
        with self._lock:
            self._lifetime = seconds

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens = {}

    # Statuses and tickets.

    def statuses(self, exclude_closed: bool = False) -> list[Json]:
        """Active statuses only (Halo does not list inactive ones)."""
        with self._lock:
            return [
                _status_json(s)
                for s in self._statuses.values()
                if not s.inactive and not (exclude_closed and s.id == CLOSED)
            ]

    def authinfo(self, site: str) -> Json | None:
        with self._lock:
            if self._authinfo is None:
                return None
            return {"auth_url": f"{site}/auth", **self._authinfo}

    def set_authinfo(self, info: Json | None) -> None:
        with self._lock:
            self._authinfo = info

    def create_ticket(self, status_id: int | None, summary: str) -> Json:
        with self._lock:
            status = self._usable_status(
                status_id if status_id is not None else NEW, faults.ControlError
            )
            now = _now()
            ticket = Ticket(self._new_ticket_id(), summary, status.id, now, now)
            if status.id == CLOSED:
                ticket.date_closed = now
            return self._add_ticket(ticket)

    def change_status(self, ticket_id: int, status_id: int) -> tuple[Json, faults.Fault | None]:
        """Apply a validated status change; an injected fault may keep it from being stored."""
        with self._lock:
            ticket = self._tickets.get(ticket_id)
            if ticket is None:
                raise ApiError(400, f"Ticket {ticket_id} does not exist", field="id")
            status = self._usable_status(
                status_id, lambda message: ApiError(400, message, field="status_id")
            )
            fault, store = self._take_status_fault()
            changed = replace(ticket, status_id=status.id, last_action=_now())
            changed.date_closed = changed.last_action if status.id == CLOSED else None
            if store:
                self._tickets[ticket.id] = changed
            return self._ticket_json(changed), fault

    # Actions.

    def add_action(self, item: Json, client: Client) -> tuple[Json, faults.Fault | None]:
        with self._lock:
            ticket = self._ticket(item["ticket_id"])
            actions = self._notes[ticket.id]
            action = Action(
                id=len(actions) + 1,
                ticket_id=ticket.id,
                note=item["note"],
                note_html=item["note_html"],
                hidden=item["hiddenfromuser"],
                outcome=item["outcome"],
                outcome_id=item["outcome_id"],
                send_email=item["sendemail"],
                who=client.agent_name,
                agent_id=client.agent_id,
                at=_now(),
            )
            actions.append(action)
            ticket.last_action = action.at
            return self._note_json(action), self._take_note_fault()

    def actions(self, ticket_id: int) -> list[Json]:
        with self._lock:
            return [self._note_json(a) for a in self._notes.get(ticket_id, [])]

    # Helpers below expect the lock to be held.

    def _unknown_ticket(self, ticket_id: int) -> ApiError:
        return ApiError(404, f"Ticket {ticket_id} not found")

    def _usable_status(
        self, status_id: int, error: Callable[[str], Exception] | None = None
    ) -> Status:
        status = self._statuses.get(status_id)
        if status is None or status.inactive:
            message = f"Status {status_id} is not a valid, active status"
            raise error(message) if error is not None else ApiError(400, message)
        return status

    def _ticket_json(self, ticket: Ticket) -> Json:
        status = self._statuses[ticket.status_id]
        return {
            "id": ticket.id,
            "dateoccurred": _timestamp(ticket.date_occurred),
            "summary": ticket.summary,
            "details": "",
            "status_id": ticket.status_id,
            "status_name": status.name,
            "tickettype_id": 1,
            "client_id": 12,
            "client_name": "Acme Corp",
            "site_id": 12,
            "user_id": 30,
            "agent_id": 0,
            "team": "1st Line",
            "priority_id": 3,
            "lastactiondate": _timestamp(ticket.last_action),
            "dateclosed": _timestamp(ticket.date_closed) if ticket.date_closed else None,
        }

    def _note_json(self, action: Action) -> Json:
        return {
            "id": action.id,
            "ticket_id": action.ticket_id,
            "outcome": action.outcome,
            "outcome_id": action.outcome_id,
            "who": action.who,
            "who_agentid": action.agent_id,
            "datetime": _timestamp(action.at),
            "note": action.note,
            "note_html": action.note_html,
            "hiddenfromuser": action.hidden,
            "sendemail": action.send_email,
            "actionby_agent_id": action.agent_id,
        }


def _status_json(status: Status) -> Json:
    return {
        "id": status.id,
        "name": status.name,
        "shortname": status.name[:4].upper(),
        "colour": status.colour,
        "sequence": status.sequence,
    }


# --- request plumbing --------------------------------------------------------------------------


def _state() -> SimState:
    state: SimState = current_app.extensions[_EXTENSION]
    return state


def _error_response(status: int, message: str, headers: Mapping[str, str]) -> Response:
    response = Response(message, status=status, mimetype="text/plain")
    response.headers.update(headers)
    return response


def _api_error(error: ApiError) -> Response:
    if error.oauth_error is not None:
        response = jsonify({"error": error.oauth_error, "error_description": error.message})
        response.status_code = error.status
    elif error.field is not None:
        response = jsonify({error.field: error.message})
        response.status_code = error.status
    elif error.status == 401:
        response = Response(status=401, mimetype="text/plain")  # Halo sends no body
    else:
        response = _error_response(error.status, error.message, {})
    response.headers.update(error.headers)
    return response


def _json_body() -> Any:
    body = request.get_json(force=True, silent=True)
    if body is None:
        raise ApiError(400, "The request body is not valid JSON")
    return body


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _ticket_in_call() -> int | None:
    """The ticket a vendor call is about: in its path, its query or the items it posts."""
    match = _TICKET_IN_PATH.match(request.path)
    if match:
        return int(match.group(1))
    if request.path == "/api/Actions" and request.method == "GET":
        raw = request.args.get("ticket_id", "")
        return int(raw) if raw.isdigit() else None
    key = {"/api/Actions": "ticket_id", "/api/Tickets": "id"}.get(request.path)
    if key is None or request.method != "POST":
        return None
    body = request.get_json(force=True, silent=True)
    items = body if isinstance(body, list) else [body]
    found = {_int(i.get(key)) if isinstance(i, dict) else None for i in items}
    return found.pop() if len(found) == 1 else None


def _authenticate() -> None:
    """A live bearer token for every /api/ call."""
    if not request.path.startswith("/api/") or request.path == "/api/authinfo":
        return
    auth = request.authorization
    client = None
    if auth is not None and auth.type == "bearer" and auth.token:
        client = _state().client_for(auth.token)
    if client is None:
        raise ApiError(401, "", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    g.client = client


# --- vendor endpoints --------------------------------------------------------------------------


def token() -> Response:
    form = request.form
    if form.get("grant_type") != "client_credentials":
        raise ApiError(
            400, "Only client_credentials is supported", oauth_error="unsupported_grant_type"
        )
    scopes = set(form.get("scope", "all").split())
    if not scopes <= {"all"}:
        raise ApiError(400, "Unknown scope", oauth_error="invalid_scope")
    issued = _state().issue_token(
        form.get("client_id", ""), form.get("client_secret", ""), request.args.get("tenant", "")
    )
    response = jsonify(issued)
    response.headers["Cache-Control"] = "no-store"
    return response


def authinfo() -> Response:
    info = _state().authinfo(request.host_url.rstrip("/"))
    if info is None:
        raise ApiError(404, "Not found")
    return jsonify(info)


def list_statuses() -> Response:
    exclude_closed = request.args.get("excludeclosed", "").lower() == "true"
    return jsonify(_state().statuses(exclude_closed))


def get_ticket(ticket_id: int) -> Response:
    return jsonify(_state().ticket(ticket_id))


def post_tickets() -> Response:
    items = _items("ticket")
    answers: list[Json] = []
    for index, item in enumerate(items):
        ticket_id, status_id = _int(item.get("id")), _int(item.get("status_id"))
        if not ticket_id:
            raise _invalid(index, "id", "Creating tickets is not simulated: use /__sim/tickets")
        # Only status changes are simulated; refusing other fields beats silently ignoring them.
        others = set(item) - {"id", "status_id"}
        if others:
            name = sorted(others)[0]
            raise _invalid(index, name, f"Updating {name} is not simulated")
        if status_id is None:
            raise _invalid(index, "status_id", "status_id must be an integer")
        try:
            ticket, fault = _state().change_status(ticket_id, status_id)
        except ApiError as error:
            if error.field is not None:
                raise _invalid(index, error.field, error.message) from None
            raise
        faults.after_write(fault)
        answers.append(ticket)
    return jsonify(answers[0] if len(answers) == 1 else answers)


def list_actions() -> Response:
    args = request.args
    raw = args.get("ticket_id", "")
    if not raw.isdigit():
        raise ApiError(400, "ticket_id is required")
    actions = _state().actions(int(raw))
    count = _positive(args.get("count"), "count")
    if count is not None:
        actions = actions[:count]
    body: Json = {"record_count": len(actions)}
    if args.get("pageinate", "").lower() == "true":
        size = min(_positive(args.get("page_size"), "page_size") or 50, _MAX_PAGE_SIZE)
        page = _positive(args.get("page_no"), "page_no") or 1
        body |= {"page_no": page, "page_size": size}
        actions = actions[(page - 1) * size : page * size]
    if args.get("includehtmlnote", "").lower() != "true":
        actions = [{k: v for k, v in a.items() if k != "note_html"} for a in actions]
    body["actions"] = actions
    return jsonify(body)


def _positive(raw: str | None, name: str) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(400, f"{name} must be a positive integer")
    return int(raw)


def post_actions() -> Response:
    # All valid before any is stored.
    items = [_action_item(index, item) for index, item in enumerate(_items("action"))]
    answers = [_state().add_action(item, g.client) for item in items]
    for _, fault in answers:
        faults.after_write(fault)
    created = [action for action, _ in answers]
    return jsonify(created[0] if len(created) == 1 else created)


def _invalid(index: int, name: str, message: str) -> ApiError:
    return ApiError(400, message, field=f"[{index}].{name}")


def _action_item(index: int, item: Json) -> Json:
    unknown = set(item) - _ACTION_FIELDS
    if unknown:
        name = sorted(unknown)[0]
        raise _invalid(index, name, f"Action field {name} is not simulated")
    ticket_id = _int(item.get("ticket_id"))
    if not ticket_id:
        raise _invalid(index, "ticket_id", "ticket_id is required")
    note, note_html = item.get("note"), item.get("note_html")
    if note is not None and not isinstance(note, str):
        raise _invalid(index, "note", "note must be text")
    if note_html is not None and not isinstance(note_html, str):
        raise _invalid(index, "note_html", "note_html must be text")
    if not (note or "").strip() and not (note_html or "").strip():
        raise _invalid(index, "note", "An action needs a note")
    if note_html is None:
        note_html = html.escape(note or "").replace("\n", "<br>")
    if note is None:
        note = html.unescape(_TAG.sub("", note_html.replace("<br>", "\n")))
    flags = {name: item.get(name, False) for name in ("hiddenfromuser", "sendemail")}
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise _invalid(index, name, f"{name} must be true or false")
    outcome = item.get("outcome", "")
    if not isinstance(outcome, str):
        raise _invalid(index, "outcome", "outcome must be text")
    outcome_id = item.get("outcome_id", 0)
    if _int(outcome_id) is None:
        raise _invalid(index, "outcome_id", "outcome_id must be an integer")
    return {
        "ticket_id": ticket_id,
        "note": note,
        "note_html": note_html,
        "outcome": outcome,
        "outcome_id": outcome_id,
        **flags,
    }


def _items(kind: str) -> list[Json]:
    body = _json_body()
    if not isinstance(body, list) or not body or not all(isinstance(i, dict) for i in body):
        raise ApiError(400, f"A non-empty JSON array of {kind} objects is required")
    return body


# --- control endpoints -------------------------------------------------------------------------


def sim_create_ticket() -> tuple[Response, int]:
    summary, (status_id,) = faults.ticket_request(_MAX_SUMMARY, "status_id")
    return jsonify(_state().create_ticket(status_id, summary)), 201


def put_tokens() -> Response:
    lifetime = faults.control_body(frozenset({"lifetime"})).get("lifetime")
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float):
        raise faults.ControlError("lifetime must be a number of seconds")
    if not 0 < lifetime <= 86_400:
        raise faults.ControlError("lifetime must be between 0 and 86400 seconds")
    _state().set_lifetime(float(lifetime))
    return jsonify({"lifetime": lifetime})


def put_authinfo() -> Response:
    body = faults.control_body(frozenset({"auth_url", "tenant_id"}))
    if not body:
        _state().set_authinfo(None)
        return jsonify(None)
    if not all(isinstance(v, str) for v in body.values()):
        raise faults.ControlError("auth_url and tenant_id must be text")
    _state().set_authinfo({"tenant_id": "", **body})
    return jsonify(body)


def delete_tokens() -> tuple[str, int]:
    _state().revoke_tokens()
    return "", 204


# --- app factory -------------------------------------------------------------------------------

_ROUTES: tuple[tuple[str, Callable[..., Any], str], ...] = (
    ("/auth/token", token, "POST"),
    ("/api/authinfo", authinfo, "GET"),
    ("/api/Status", list_statuses, "GET"),
    ("/api/Tickets/<int:ticket_id>", get_ticket, "GET"),
    ("/api/Tickets", post_tickets, "POST"),
    ("/api/Actions", list_actions, "GET"),
    ("/api/Actions", post_actions, "POST"),
    ("/__sim/tickets", sim_create_ticket, "POST"),
    ("/__sim/tokens", put_tokens, "PUT"),
    ("/__sim/tokens", delete_tokens, "DELETE"),
    ("/__sim/authinfo", put_authinfo, "PUT"),
)


def create_app(state: SimState | None = None) -> Flask:
    """Build the simulator app around `state` (a freshly seeded one by default)."""
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep Halo's field order
    app.extensions[_EXTENSION] = state if state is not None else SimState()
    for rule, view, method in _ROUTES:
        app.add_url_rule(rule, view_func=view, methods=[method])
    faults.FaultControls(
        state=_state,
        ticket_id=_ticket_in_call,
        error=_error_response,
        secret_fields=frozenset({"client_secret", "access_token", "refresh_token", "password"}),
    ).install(app)
    app.before_request(_authenticate)  # after the request faults
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, faults.http_error_handler(_error_response))
    return app


def main(argv: list[str] | None = None) -> None:
    run_cli(create_app, argv, "HaloPSA simulator", 8083, "HaloPSA API simulator")


if __name__ == "__main__":
    main()
