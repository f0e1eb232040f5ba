"""HTTP simulator of the Autotask PSA REST API (v1.0), with faults switchable at runtime.

Behaviour follows Autotask's REST documentation: zone discovery at
`/atservicesrest/v1.0/ZoneInformation?user=` (no credentials needed), then `{zone}/V1.0/...` calls
authenticated by the `UserName`, `Secret` and `ApiIntegrationCode` headers; ticket notes with
integer picklists `noteType` and `publish`; the ticket status changed by `PATCH /V1.0/Tickets`
with `{"id", "status"}`; picklists read from `.../entityInformation/fields`; notes found with
`POST /V1.0/TicketNotes/query`. Error bodies are `{"errors": ["..."]}`. Paths are matched
case-insensitively, like the real service (`v1.0/zoneInformation` and `V1.0/ZoneInformation`);
the request log shows them in their canonical case.

Autotask's thread limit (its "API thread limiting" page) is modelled: at most 3 requests in flight
per API tracking identifier (the `ApiIntegrationCode` header) and object endpoint, the entity
after `V1.0/` (`Tickets` for `.../V1.0/Tickets/7000/Notes` too); a fourth is refused at once with
429 and `{"errors": [...]}` before anything else is checked. ZoneInformation is not counted. A
request counts from its arrival (an injected `slow` delay included) until its answer is made.

Confirmed in KerkhoffTechnologies/django-autotask and modelled: discovery for a blank or unknown
user answers 500 with `{"errors": [...]}`; a permission refusal answers 500 (not 403) with "does
not have the adequate permissions"; live tenants label `publish` "All Autotask Users", "Internal
Project Team" and "Internal & Co-Managed" (no "Internal Only").

Unconfirmed and modelled here (keep the provider tolerant of them): a missing or wrong
ApiIntegrationCode answers 401 with a message naming it; a stale zone answers 401 (the user is
unknown in that zone's database); an unknown or inactive picklist value answers 400; a note needs a
non-empty `title` (some ticket categories require one); `description` holds at most 32,000
characters; picklist values are strings, as in the entityInformation/fields answers of the real
API; queries are answered on one page; a thread-limit refusal carries no Retry-After; a child
collection counts against its parent entity's thread limit.

Seed data (restored by `POST /__sim/reset`):
  API user `api@acme.example`, secret `at-secret`, integration code `AT-INTEGRATION`.
  Zone: `{this server}/atservicesrest/`.
  Ticket status: 1 New (default), 5 Complete (Autotask's closed status), 7 Waiting Customer,
    8 In Progress, 11 Escalate, 99 Legacy (inactive).
  Note publish: 1 All Autotask Users, 2 Internal Project Team, 3 Internal & Co-Managed.
  Note noteType: 1 Task Detail, 2 Resolution, 3 Internal Notes, 4 Old Type (inactive).
  No tickets. Ticket ids start at 7000 and note ids at 80001; neither restarts on reset.

Control API (no auth, JSON; errors in Autotask's shape):
  POST   /__sim/reset              seed again: tickets, notes, zone, faults, request log; 204
  POST   /__sim/tickets            {"status_id"?, "summary"?} -> 201 Ticket (as in `item`)
  GET    /__sim/tickets/<id>       Ticket plus "notes": [TicketNote, ...] in stored order
  PUT    /__sim/zone               {"prefix": "ws5"} -> {"url": ...}: the zone moves to
                                   `{server}/ws5/atservicesrest/`; "" moves it back; calls to
                                   the old zone answer 401
  PUT    /__sim/permissions        {"create_notes": false} -> note POSTs are refused with a 500
                                   naming missing permissions; true restores
  GET    /__sim/threads            {"limit": 3, "peaks": {"Tickets": 3, ...}}: the most requests
                                   seen in flight at once per endpoint (for one integration code)
                                   since the last reset
  POST|GET|DELETE /__sim/faults..., GET /__sim/requests?ticket_id=   see simulators/faults.py

Faults match vendor calls (ZoneInformation included, /__sim/ never) by `ticket_id` (from the path
`/Tickets/<id>`, the body `id` of a ticket PATCH, or the `ticketID` a note query asks about),
`method` and `path_contains`. Kinds: slow, rate_limit, server_error (see faults.py);
status_not_applied (a valid status PATCH answers 200 but the status is not stored);
drop_after_store (a valid note POST or status PATCH is stored, then the connection is closed
without an answer). The request log never holds the `Secret` or `ApiIntegrationCode` values.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
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

USERNAME = "api@acme.example"
SECRET = "at-secret"
INTEGRATION_CODE = "AT-INTEGRATION"
API_BASE = "/atservicesrest/V1.0"
DISCOVERY_PATH = "/atservicesrest/V1.0/ZoneInformation"
NO_PERMISSION = (
    "The logged in Resource does not have the adequate permissions to create this entity type."
)
# Every literal path segment, in the case the routes use: requests may use any case.
_CANONICAL = {
    part.lower(): part
    for part in (
        "atservicesrest",
        "V1.0",
        "ZoneInformation",
        "Tickets",
        "Notes",
        "TicketNotes",
        "query",
        "entityInformation",
        "fields",
    )
}
_EXTENSION = "autotask_sim"
_FIRST_TICKET_ID = 7000
_FIRST_NOTE_ID = 80001
_MAX_DESCRIPTION = 32_000
_MAX_TITLE = 250
_MAX_RECORDS = 500
_ZONE_PREFIX = re.compile(r"[A-Za-z0-9_-]*")
_TICKET_IN_PATH = re.compile(r"/V1\.0/Tickets/(\d+)(?:/|$)")
_ENTITY_IN_PATH = re.compile(r"/V1\.0/([^/]+)")
THREADS = 3  # requests in flight per integration code and object endpoint


@dataclass(frozen=True)
class Choice:
    """One picklist value."""

    value: int
    label: str
    active: bool = True
    default: bool = False
    system: bool = True


STATUSES = (
    Choice(1, "New", default=True),
    Choice(5, "Complete"),
    Choice(7, "Waiting Customer"),
    Choice(8, "In Progress"),
    Choice(11, "Escalate"),
    Choice(99, "Legacy", active=False, system=False),
)
PUBLISH = (
    Choice(1, "All Autotask Users", default=True),
    Choice(2, "Internal Project Team"),
    Choice(3, "Internal & Co-Managed"),
)
NOTE_TYPES = (
    Choice(1, "Task Detail", default=True),
    Choice(2, "Resolution"),
    Choice(3, "Internal Notes"),
    Choice(4, "Old Type", active=False, system=False),
)
COMPLETE = 5


@dataclass(frozen=True)
class ApiUser:
    username: str
    secret: str
    integration_code: str
    resource_id: int


@dataclass
class Ticket:
    id: int
    title: str
    status: int
    create_date: datetime
    last_activity: datetime
    completed: datetime | None = None


@dataclass(frozen=True)
class Note:
    id: int
    ticket_id: int
    note_type: int
    publish: int
    title: str
    description: str
    created: datetime
    creator_resource_id: int


class ApiError(Exception):
    """An error answered with Autotask's `{"errors": [...]}` body."""

    def __init__(self, status: int, *messages: str, headers: Mapping[str, str] | None = None):
        super().__init__("; ".join(messages))
        self.status = status
        self.messages = list(messages)
        self.headers = dict(headers or {})


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


_SEED_USERS = (ApiUser(USERNAME, SECRET, INTEGRATION_CODE, 29682885),)


class ThreadLimit:
    """Requests in flight per (integration code, endpoint), refused past `limit`; with the peak
    seen per endpoint. Counts survive a reset (requests in flight then still end); peaks not."""

    def __init__(self, limit: int = THREADS) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._in_flight: Counter[tuple[str, str]] = Counter()
        self._peaks: dict[str, int] = {}

    def enter(self, code: str, endpoint: str) -> bool:
        with self._lock:
            if self._in_flight[(code, endpoint)] >= self.limit:
                return False
            self._in_flight[(code, endpoint)] += 1
            count = self._in_flight[(code, endpoint)]
            self._peaks[endpoint] = max(self._peaks.get(endpoint, 0), count)
            return True

    def leave(self, code: str, endpoint: str) -> None:
        with self._lock:
            self._in_flight[(code, endpoint)] -= 1

    def peaks(self) -> dict[str, int]:
        with self._lock:
            return dict(self._peaks)

    def clear_peaks(self) -> None:
        with self._lock:
            self._peaks.clear()


class SimState(faults.PsaState[Ticket, Note]):
    """All simulator state; every public method takes the lock (the server is threaded)."""

    def __init__(self) -> None:
        self._next_note_id = _FIRST_NOTE_ID
        self.threads = ThreadLimit()
        super().__init__(_FIRST_TICKET_ID)

    def _seed(self) -> None:
        self.threads.clear_peaks()
        self._zone_prefix = ""
        self._users = {u.username.casefold(): u for u in _SEED_USERS}
        self._picklists = {"status": STATUSES, "publish": PUBLISH, "noteType": NOTE_TYPES}
        self._may_create_notes = True

    # Discovery and auth.

    @property
    def zone_prefix(self) -> str:
        with self._lock:
            return self._zone_prefix

    def move_zone(self, prefix: str) -> None:
        with self._lock:
            self._zone_prefix = prefix

    @property
    def may_create_notes(self) -> bool:
        with self._lock:
            return self._may_create_notes

    def set_may_create_notes(self, allowed: bool) -> None:
        with self._lock:
            self._may_create_notes = allowed

    def knows_user(self, username: str) -> bool:
        with self._lock:
            return username.casefold() in self._users

    def authenticate(self, username: str, secret: str, integration_code: str) -> ApiUser:
        with self._lock:
            user = self._users.get(username.casefold())
        if user is None or user.secret != secret:
            # Unconfirmed wording; it only has to be told apart from a bad integration code.
            raise ApiError(401, "User authentication failed: check the UserName and Secret.")
        if integration_code != user.integration_code:
            raise ApiError(401, "The ApiIntegrationCode is missing or not valid for this API user.")
        return user

    # Picklists.

    def picklist(self, field_name: str) -> tuple[Choice, ...]:
        with self._lock:
            return self._picklists[field_name]

    # Tickets.

    def create_ticket(self, status: int | None, title: str) -> Json:
        with self._lock:
            chosen = (
                next(c for c in self._picklists["status"] if c.default)
                if status is None
                else self._active("status", status, faults.ControlError)
            )
            now = _now()
            ticket = Ticket(self._new_ticket_id(), title, chosen.value, now, now)
            if chosen.value == COMPLETE:
                ticket.completed = now
            return self._add_ticket(ticket)

    def find_ticket(self, ticket_id: int) -> Json | None:
        """The ticket, or None for an unknown id (Autotask answers `{"item": null}`)."""
        with self._lock:
            ticket = self._tickets.get(ticket_id)
            return self._ticket_json(ticket) if ticket is not None else None

    def change_status(self, ticket_id: int, status: int) -> faults.Fault | None:
        """Apply a validated status change; an injected fault may keep it from being stored."""
        with self._lock:
            ticket = self._ticket(ticket_id)
            chosen = self._active("status", status)
            fault, store = self._take_status_fault()
            if store:
                changed = replace(ticket, status=chosen.value, last_activity=_now())
                changed.completed = changed.last_activity if chosen.value == COMPLETE else None
                self._tickets[ticket.id] = changed
            return fault

    # Notes.

    def add_note(
        self, ticket_id: int, note_type: int, publish: int, title: str, description: str, by: int
    ) -> tuple[int, faults.Fault | None]:
        with self._lock:
            ticket = self._ticket(ticket_id)
            self._active("noteType", note_type)
            self._active("publish", publish)
            note = Note(
                self._next_note_id, ticket.id, note_type, publish, title, description, _now(), by
            )
            self._next_note_id += 1
            self._notes[ticket.id].append(note)
            ticket.last_activity = note.created
            return note.id, self._take_note_fault()

    def all_notes(self) -> list[Json]:
        with self._lock:
            return [self._note_json(n) for notes in self._notes.values() for n in notes]

    # Helpers below expect the lock to be held.

    def _unknown_ticket(self, ticket_id: int) -> ApiError:
        return ApiError(404, f"Ticket with id {ticket_id} was not found.")

    def _active(
        self, field_name: str, value: int, error: Callable[[str], Exception] | None = None
    ) -> Choice:
        for choice in self._picklists[field_name]:
            if choice.value == value and choice.active:
                return choice
        message = f"Value {value} is not an active picklist value for {field_name}."
        raise error(message) if error is not None else ApiError(400, message)

    def _ticket_json(self, ticket: Ticket) -> Json:
        return {
            "id": ticket.id,
            "ticketNumber": f"T{ticket.create_date:%Y%m%d}.{ticket.id:04d}",
            "title": ticket.title,
            "status": ticket.status,
            "priority": 2,
            "queueID": 8,
            "companyID": 0,
            "createDate": _timestamp(ticket.create_date),
            "lastActivityDate": _timestamp(ticket.last_activity),
            "completedDate": _timestamp(ticket.completed) if ticket.completed else None,
            "userDefinedFields": [],
        }

    def _note_json(self, note: Note) -> Json:
        return {
            "id": note.id,
            "ticketID": note.ticket_id,
            "noteType": note.note_type,
            "publish": note.publish,
            "title": note.title,
            "description": note.description,
            "createDateTime": _timestamp(note.created),
            "lastActivityDate": _timestamp(note.created),
            "creatorResourceID": note.creator_resource_id,
            "createdByContactID": None,
            "impersonatorCreatorResourceID": None,
        }


def _choice_json(choice: Choice, order: int) -> Json:
    return {
        "value": str(choice.value),  # strings, as the real fields answers carry them
        "label": choice.label,
        "isDefaultValue": choice.default,
        "sortOrder": order,
        "parentValue": "",
        "isActive": choice.active,
        "isSystem": choice.system,
    }


def _field(
    name: str, data_type: str, choices: tuple[Choice, ...] | None = None, **extra: Any
) -> Json:
    return {
        "name": name,
        "dataType": data_type,
        "length": extra.pop("length", 0),
        "isRequired": extra.pop("required", False),
        "isReadOnly": extra.pop("read_only", False),
        "isQueryable": True,
        "isReference": False,
        "referenceEntityType": "",
        "isPickList": choices is not None,
        "picklistValues": (
            [_choice_json(c, i) for i, c in enumerate(choices)] if choices is not None else None
        ),
        "picklistParentValueField": "",
        "isSupportedWebhookField": False,
    }


# --- note queries ------------------------------------------------------------------------------

_NOTE_FIELDS = {
    "id": "integer",
    "ticketid": "integer",
    "notetype": "integer",
    "publish": "integer",
    "title": "string",
    "description": "string",
    "createdatetime": "datetime",
    "creatorresourceid": "integer",
}
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "noteq": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and a > b,
    "gte": lambda a, b: a is not None and a >= b,
    "lt": lambda a, b: a is not None and a < b,
    "lte": lambda a, b: a is not None and a <= b,
    "beginswith": lambda a, b: str(a or "").startswith(b),
    "endswith": lambda a, b: str(a or "").endswith(b),
    "contains": lambda a, b: b in str(a or ""),
}
_TEXT_OPS = frozenset({"beginswith", "endswith", "contains"})
Predicate = Callable[[Json], bool]


def _query_predicate(filters: Any) -> Predicate:
    """The top-level `filter` list; its entries all have to hold. Text compares ignore case."""
    if not isinstance(filters, list) or not filters:
        raise ApiError(400, "A query needs at least one filter expression.")
    parts = [_expression(f) for f in filters]
    return lambda record: all(p(record) for p in parts)


def _expression(expression: Any) -> Predicate:
    if not isinstance(expression, dict):
        raise ApiError(400, "Each filter expression must be an object.")
    op = str(expression.get("op", "")).lower()
    if op in ("and", "or"):
        items = expression.get("items")
        if not isinstance(items, list) or not items:
            raise ApiError(400, f"An '{op}' expression needs items.")
        parts = [_expression(i) for i in items]
        combine = all if op == "and" else any
        return lambda record: combine(p(record) for p in parts)
    field_name = str(expression.get("field", ""))
    key = field_name.lower()
    if key not in _NOTE_FIELDS:
        raise ApiError(400, f"Unable to find {field_name!r} field in the TicketNotes entity.")
    if op in ("exist", "notexist"):
        want = op == "exist"
        return lambda record: want == (_lookup(record, key) not in (None, ""))
    if op not in _COMPARISONS:
        raise ApiError(400, f"Operator {op!r} is not supported.")
    if op in _TEXT_OPS and _NOTE_FIELDS[key] != "string":
        raise ApiError(400, f"Operator {op!r} needs a text field, and {field_name} is not one.")
    value = _normalise(_NOTE_FIELDS[key], expression.get("value"), field_name)
    compare = _COMPARISONS[op]
    return lambda record: compare(_normalise(_NOTE_FIELDS[key], _lookup(record, key)), value)


def _lookup(record: Json, key: str) -> Any:
    return next((v for k, v in record.items() if k.lower() == key), None)


def _normalise(data_type: str, value: Any, field_name: str | None = None) -> Any:
    if value is None:
        return None
    if data_type == "integer":
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ApiError(400, f"Value {value!r} is not valid for {field_name}.") from None
    return str(value).casefold()


# --- request plumbing --------------------------------------------------------------------------


def _state() -> SimState:
    state: SimState = current_app.extensions[_EXTENSION]
    return state


def _error_response(status: int, message: str, headers: Mapping[str, str]) -> Response:
    response = jsonify({"errors": [message]})
    response.status_code = status
    response.headers.update(headers)
    return response


def _api_error(error: ApiError) -> Response:
    response = jsonify({"errors": error.messages})
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


def _json_body() -> Any:
    body = request.get_json(force=True, silent=True)
    if body is None:
        raise ApiError(400, "The request body is not valid JSON.")
    return body


def _ticket_in_call() -> int | None:
    """The ticket a vendor call is about: in its path, a PATCH body or a note query filter."""
    match = _TICKET_IN_PATH.search(request.path)
    if match:
        return int(match.group(1))
    if request.method == "PATCH" and request.path.endswith("/V1.0/Tickets"):
        body = request.get_json(force=True, silent=True)
        raw = body.get("id") if isinstance(body, dict) else None
        return raw if isinstance(raw, int) and not isinstance(raw, bool) else None
    if request.method == "POST" and request.path.endswith("/V1.0/TicketNotes/query"):
        body = request.get_json(force=True, silent=True)
        return _ticket_in_filter(body.get("filter") if isinstance(body, dict) else None)
    return None


def _ticket_in_filter(expression: Any) -> int | None:
    if isinstance(expression, list):
        found = (_ticket_in_filter(e) for e in expression)
        return next((t for t in found if t is not None), None)
    if not isinstance(expression, dict):
        return None
    if str(expression.get("op", "")).lower() == "and":
        return _ticket_in_filter(expression.get("items"))
    if str(expression.get("field", "")).lower() == "ticketid" and expression.get("op") == "eq":
        value = expression.get("value")
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    return None


def _pop_zone(endpoint: str | None, values: dict[str, Any] | None) -> None:
    if endpoint is not None and endpoint.startswith("api_"):
        g.zone = values.pop("zone", "") if values is not None else ""


def _take_thread() -> None:
    """Autotask's thread limit, on every vendor call before anything else is checked."""
    match = _ENTITY_IN_PATH.search(request.path)
    if match is None or match.group(1) == "ZoneInformation":  # not thread-limited
        return
    thread = (request.headers.get("ApiIntegrationCode", ""), match.group(1))
    threads = _state().threads
    if not threads.enter(*thread):
        raise ApiError(
            429,
            f"The API thread threshold of {threads.limit} threads has been exceeded for this "
            f"integration on the {thread[1]} endpoint.",
        )
    g.thread = thread


def _leave_thread(error: BaseException | None) -> None:
    thread = g.pop("thread", None)
    if thread is not None:
        _state().threads.leave(*thread)


def _authenticate() -> None:
    """The zone and the three auth headers, for every `{zone}/V1.0/...` call."""
    if "zone" not in g:
        return
    state = _state()
    headers = request.headers
    if g.zone != state.zone_prefix:
        raise ApiError(401, "User authentication failed: the user is not known in this zone.")
    g.user = state.authenticate(
        headers.get("UserName", ""),
        headers.get("Secret", ""),
        headers.get("ApiIntegrationCode", ""),
    )


# --- vendor endpoints --------------------------------------------------------------------------


def zone_information() -> Response:
    user = request.args.get("user", "")
    if not user or not _state().knows_user(user):  # Autotask answers both with a 500
        raise ApiError(500, "Zone information could not be determined for this user.")
    prefix = _state().zone_prefix
    base = request.host_url  # ends with "/"
    zone = f"{base}{prefix}/atservicesrest/" if prefix else f"{base}atservicesrest/"
    return jsonify({"zoneName": "Simulated Zone", "url": zone, "webUrl": base, "ci": 12345})


def get_ticket(ticket_id: int) -> Response:
    return jsonify({"item": _state().find_ticket(ticket_id)})


def patch_ticket() -> Response:
    body = _json_body()
    if not isinstance(body, dict):
        raise ApiError(400, "A Ticket object is required.")
    ticket_id, status = body.get("id"), body.get("status")
    if not isinstance(ticket_id, int) or isinstance(ticket_id, bool):
        raise ApiError(400, "The id field is required to update a Ticket.")
    # Only status changes are simulated; refusing other fields beats silently ignoring them.
    others = set(body) - {"id", "status"}
    if others:
        raise ApiError(400, f"Updating {', '.join(sorted(others))} is not simulated.")
    if not isinstance(status, int) or isinstance(status, bool):
        raise ApiError(400, "Value for status must be an integer.")
    fault = _state().change_status(ticket_id, status)
    faults.after_write(fault)
    return jsonify({"itemId": ticket_id})


def create_note(ticket_id: int) -> Response:
    if not _state().may_create_notes:
        raise ApiError(500, NO_PERMISSION)
    body = _json_body()
    if not isinstance(body, dict):
        raise ApiError(400, "A TicketNote object is required.")
    if "ticketID" in body and body["ticketID"] != ticket_id:
        raise ApiError(400, "ticketID does not match the parent ticket.")
    values = [_picklist_value(body, name) for name in ("noteType", "publish")]
    title, description = body.get("title"), body.get("description")
    if not isinstance(title, str) or not title.strip():
        raise ApiError(400, "Title is required for a note in this ticket category.")
    if len(title) > _MAX_TITLE:
        raise ApiError(400, f"Title exceeds the maximum length of {_MAX_TITLE}.")
    if not isinstance(description, str) or not description.strip():
        raise ApiError(400, "Description is required.")
    if len(description) > _MAX_DESCRIPTION:
        raise ApiError(400, f"Description exceeds the maximum length of {_MAX_DESCRIPTION}.")
    note_id, fault = _state().add_note(
        ticket_id, values[0], values[1], title, description, g.user.resource_id
    )
    faults.after_write(fault)
    return jsonify({"itemId": note_id})


def _picklist_value(body: Json, name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError(400, f"Value for {name} is required and must be an integer.")
    return value


def query_notes() -> Response:
    body = _json_body()
    if not isinstance(body, dict):
        raise ApiError(400, "A query object is required.")
    predicate = _query_predicate(body.get("filter"))
    limit = body.get("maxRecords", _MAX_RECORDS)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= _MAX_RECORDS:
        raise ApiError(400, f"maxRecords must be between 1 and {_MAX_RECORDS}.")
    items = sorted((n for n in _state().all_notes() if predicate(n)), key=lambda n: n["id"])
    page = items[:limit]
    details = {"count": len(page), "requestCount": limit, "prevPageUrl": None, "nextPageUrl": None}
    return jsonify({"items": page, "pageDetails": details})


def ticket_fields() -> Response:
    state = _state()
    fields = [
        _field("id", "long", required=True, read_only=True),
        _field("title", "string", length=255, required=True),
        _field("status", "integer", state.picklist("status"), required=True),
        _field("priority", "integer"),
        _field("completedDate", "datetime", read_only=True),
    ]
    return jsonify({"fields": fields})


def note_fields() -> Response:
    state = _state()
    fields = [
        _field("id", "long", required=True, read_only=True),
        _field("ticketID", "integer", required=True),
        _field("noteType", "integer", state.picklist("noteType"), required=True),
        _field("publish", "integer", state.picklist("publish"), required=True),
        _field("title", "string", length=_MAX_TITLE),
        _field("description", "string", length=_MAX_DESCRIPTION, required=True),
    ]
    return jsonify({"fields": fields})


# --- control endpoints -------------------------------------------------------------------------


def sim_create_ticket() -> tuple[Response, int]:
    summary, (status_id,) = faults.ticket_request(255, "status_id")
    return jsonify(_state().create_ticket(status_id, summary)), 201


def put_zone() -> Response:
    prefix = faults.optional(faults.control_body(frozenset({"prefix"})), "prefix", str) or ""
    prefix = prefix.strip("/")
    if not _ZONE_PREFIX.fullmatch(prefix) or prefix == "atservicesrest" or prefix == "__sim":
        raise faults.ControlError("prefix must be a single path segment such as 'ws5'")
    _state().move_zone(prefix)
    base = request.host_url
    return jsonify(
        {"url": f"{base}{prefix}/atservicesrest/" if prefix else f"{base}atservicesrest/"}
    )


# --- app factory -------------------------------------------------------------------------------

_API_ROUTES: tuple[tuple[str, Callable[..., Any], str], ...] = (
    ("/Tickets/<int:ticket_id>", get_ticket, "GET"),
    ("/Tickets", patch_ticket, "PATCH"),
    ("/Tickets/<int:ticket_id>/Notes", create_note, "POST"),
    ("/TicketNotes/query", query_notes, "POST"),
    ("/Tickets/entityInformation/fields", ticket_fields, "GET"),
    ("/TicketNotes/entityInformation/fields", note_fields, "GET"),
)


def put_permissions() -> Response:
    allowed = faults.control_body(frozenset({"create_notes"})).get("create_notes", True)
    if not isinstance(allowed, bool):
        raise faults.ControlError("create_notes must be true or false")
    _state().set_may_create_notes(allowed)
    return jsonify({"create_notes": allowed})


def thread_peaks() -> Response:
    threads = _state().threads
    return jsonify({"limit": threads.limit, "peaks": threads.peaks()})


def _case_insensitive_paths(wsgi_app: Callable[..., Any]) -> Callable[..., Any]:
    """Autotask matches paths in any case: spell known segments as the routes do."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/__sim/"):
            parts = path.split("/")
            environ["PATH_INFO"] = "/".join(_CANONICAL.get(p.lower(), p) for p in parts)
        return wsgi_app(environ, start_response)

    return app


_CONTROL_ROUTES: tuple[tuple[str, Callable[..., Any], str], ...] = (
    ("/__sim/tickets", sim_create_ticket, "POST"),
    ("/__sim/zone", put_zone, "PUT"),
    ("/__sim/permissions", put_permissions, "PUT"),
    ("/__sim/threads", thread_peaks, "GET"),
)
_HIDDEN_HEADERS = faults.DEFAULT_HIDDEN_HEADERS | {"secret", "apiintegrationcode"}


def create_app(state: SimState | None = None) -> Flask:
    """Build the simulator app around `state` (a freshly seeded one by default)."""
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep Autotask's field order
    sim = state if state is not None else SimState()
    app.extensions[_EXTENSION] = sim
    app.add_url_rule(DISCOVERY_PATH, view_func=zone_information, methods=["GET"])
    for rule, view, method in _API_ROUTES:
        name = f"api_{view.__name__}"
        app.add_url_rule(f"{API_BASE}{rule}", name, view_func=view, methods=[method])
        app.add_url_rule(f"/<zone>{API_BASE}{rule}", name, view_func=view, methods=[method])
    for rule, view, method in _CONTROL_ROUTES:
        app.add_url_rule(rule, view_func=view, methods=[method])
    app.url_value_preprocessor(_pop_zone)
    faults.FaultControls(
        state=_state,
        ticket_id=_ticket_in_call,
        error=_error_response,
        hidden_headers=_HIDDEN_HEADERS,
        secret_fields=frozenset({"secret", "apiintegrationcode", "password"}),
        admit=_take_thread,
    ).install(app)
    app.teardown_request(_leave_thread)
    app.before_request(_authenticate)  # after the request faults, as in the real service order
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, faults.http_error_handler(_error_response))
    app.wsgi_app = _case_insensitive_paths(app.wsgi_app)  # type: ignore[method-assign]
    return app


def main(argv: list[str] | None = None) -> None:
    run_cli(create_app, argv, "Autotask simulator", 8082, "Autotask PSA REST API simulator")


if __name__ == "__main__":
    main()
