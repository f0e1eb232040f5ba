"""HTTP simulator of the ConnectWise PSA (Manage) REST API, with faults switchable at runtime.

Behaviour follows ConnectWise's REST documentation and OpenAPI document: Basic auth
`{companyId}+{publicKey}` / `{privateKey}` plus a `clientId` header on every
`/{codebase}/apis/3.0/` call, JSON Patch status
changes validated against the ticket's board, ServiceNote display-flag validation, paged lists with
`conditions`/`orderBy`/`page`/`pageSize` and ConnectWise-style `Link` headers, and error bodies
`{"code", "message", "errors"?}`. Checked against the vendor's OpenAPI document (2025.8) by the
contract tests: successful answers are `application/vnd.connectwise.com+json; version=<asked>`
(2025.8 unless the Accept header names another), an unknown company's companyinfo is 200 with a
JSON `null` (as django-connectwise reads it), and boards carry `inactiveFlag`.

Seed data (restored by `POST /__sim/reset`):
  company `ACME` ("Acme MSP"), API keys public `pub-key` / private `priv-key` (member
  `WritebackAPI`), codebase `v2025_1/`.
  board 1 "Help Desk": 1 New (default), 2 In Progress, 42 Resolved (closed, escalation Resolved),
    43 Escalated (escalation Responded), 44 Waiting on Customer, 5 Old Closed (closed, inactive).
  board 21 "Projects": 17 New (default), 18 Complete (closed), 19 Escalated (escalation Responded).
  board 30 "Retired Queue" (inactive): 31 New (default).
  No tickets. Ticket ids start at 1000 and note ids at 70001; neither restarts on reset, so a stale
  id from an earlier test never names a new record.

Control API (no auth, JSON):
  POST   /__sim/reset              seed again: tickets, notes, faults, request log, codebase; 204
  POST   /__sim/tickets            {"board_id"?, "status_id"?, "summary"?} -> 201 Ticket
  GET    /__sim/tickets/<id>       Ticket plus "notes": [ServiceNote, ...] in stored order
  PUT    /__sim/codebase           {"codebase": "v2025_2/"} -> {"codebase": ...}
  PUT    /__sim/conditions         {"notes": false} -> note lists answer any `conditions` with
                                   400 (as a server refusing the filter would); true restores
  POST   /__sim/faults             {"kind", "ticket_id"?, "method"?, "path_contains"?, "times"?,
                                    kind params} -> 201 fault (with "id")
  GET    /__sim/faults             faults in creation order, "times" = matches left (-1 = endless)
  DELETE /__sim/faults[/<id>]      remove all faults / one fault -> 204
  GET    /__sim/requests?ticket_id= vendor-call log, oldest first: method, path, query (object),
                                    status, ticket_id, body (JSON or null), headers (never
                                    Authorization or Cookie), faults (kinds applied)

Faults match vendor calls (companyinfo included, /__sim/ never) by `ticket_id` (the ticket in
the path), `method` and `path_contains`; omitted filters match everything. Write faults only fire
on writes that succeed. Kinds, checked in creation order; each match uses up one of `times`:
  slow {"delay": s=1.0}            sleep, then handle normally (combines with the kinds below)
  rate_limit {"retry_after": s=1}  429 with a `Retry-After` header
  server_error {"status": 500}     500/502/503/504 with a ConnectWise-style body
  status_not_applied               a valid status PATCH answers 200 showing the requested status,
                                   but the stored status is unchanged
  drop_after_store                 a successful note POST or status PATCH is stored, then the
                                   connection is closed without a response
"""

from __future__ import annotations

import logging
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from writeback_simulators import faults
from writeback_simulators.server import run_cli

logger = logging.getLogger(__name__)

Json = dict[str, Any]

DEFAULT_CODEBASE = "v2025_1/"
VENDOR_MEDIA_TYPE = "application/vnd.connectwise.com+json"
DEFAULT_VERSION = "2025.8"
_ACCEPT_VERSION = re.compile(r"version=([0-9]{4}\.[0-9]{1,2})")
_API_PREFIX = "/<codebase>/apis/3.0"
_EXTENSION = "connectwise_sim"
_FIRST_TICKET_ID = 1000
_FIRST_NOTE_ID = 70001
_DEFAULT_PAGE_SIZE = 25
_MAX_PAGE_SIZE = 1000
_TICKET_IN_PATH = re.compile(r"/apis/3\.0/service/tickets/(\d+)(?:/|$)")
_CODEBASE = re.compile(r"[A-Za-z0-9_.-]+/")
_DISPLAY_FLAGS = ("detailDescriptionFlag", "internalAnalysisFlag", "resolutionFlag")
_OTHER_NOTE_FLAGS = ("issueFlag", "customerUpdatedFlag")
# The codes of the errors faults.py answers with: control-API refusals and injected failures.
_SHARED_ERROR_CODES = {
    400: "InvalidRequest",
    404: "NotFound",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
_MAX_SUMMARY = 100


class ApiError(Exception):
    """An error answered with a ConnectWise-style body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        errors: list[Json] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = dict(headers or {})

    def body(self) -> Json:
        body: Json = {"code": self.code, "message": self.message}
        if self.errors:
            body["errors"] = self.errors
        return body


def _invalid(resource: str, code: str, message: str, field_name: str | None = None) -> ApiError:
    error: Json = {"code": code, "message": message, "resource": resource}
    if field_name is not None:
        error["field"] = field_name
    return ApiError(400, "InvalidObject", f"{resource} object is invalid", [error])


def _not_found(entity: str) -> ApiError:
    return ApiError(404, "NotFound", f"{entity} record not found")


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# --- state -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiKey:
    company_id: str
    public_key: str
    private_key: str
    member: str


@dataclass(frozen=True)
class Board:
    id: int
    name: str
    inactive: bool = False


@dataclass(frozen=True)
class BoardStatus:
    id: int
    board_id: int
    name: str
    sort_order: int
    closed: bool = False
    inactive: bool = False
    default: bool = False
    escalation: str = "NoEscalation"


@dataclass
class Ticket:
    id: int
    summary: str
    board_id: int
    status_id: int
    last_updated: datetime
    updated_by: str
    closed_date: datetime | None = None
    closed_by: str | None = None


@dataclass(frozen=True)
class Note:
    id: int
    ticket_id: int
    text: str
    flags: Mapping[str, bool]
    process_notifications: bool
    date_created: datetime
    created_by: str


_SEED_BOARDS = (Board(1, "Help Desk"), Board(21, "Projects"), Board(30, "Retired Queue", True))
_SEED_STATUSES = (
    BoardStatus(1, 1, "New", 0, default=True, escalation="NotResponded"),
    BoardStatus(2, 1, "In Progress", 1),
    BoardStatus(42, 1, "Resolved", 2, closed=True, escalation="Resolved"),
    BoardStatus(43, 1, "Escalated", 3, escalation="Responded"),
    BoardStatus(44, 1, "Waiting on Customer", 4),
    BoardStatus(5, 1, "Old Closed", 5, closed=True, inactive=True, escalation="Resolved"),
    BoardStatus(17, 21, "New", 0, default=True, escalation="NotResponded"),
    BoardStatus(18, 21, "Complete", 1, closed=True, escalation="Resolved"),
    BoardStatus(19, 21, "Escalated", 2, escalation="Responded"),
    BoardStatus(31, 30, "New", 0, default=True, escalation="NotResponded"),
)
_SEED_COMPANIES = {"ACME": "Acme MSP"}
# References the vendor's schema requires on every board and ticket (one of each is enough here).
_BOARD_LOCATION = {"id": 2, "name": "Main Office"}
_BOARD_DEPARTMENT = {"id": 10, "identifier": "Services", "name": "Services"}
_TICKET_COMPANY = {"id": 19300, "identifier": "Contoso", "name": "Contoso Ltd"}
_SEED_KEYS = (ApiKey("ACME", "pub-key", "priv-key", "WritebackAPI"),)


class SimState(faults.PsaState[Ticket, Note]):
    """All simulator state; every public method takes the lock (the server is threaded)."""

    def __init__(self) -> None:
        self._next_note_id = _FIRST_NOTE_ID
        super().__init__(_FIRST_TICKET_ID)

    def _seed(self) -> None:
        self._codebase = DEFAULT_CODEBASE
        self._companies = dict(_SEED_COMPANIES)
        self._keys = {(k.company_id, k.public_key): k for k in _SEED_KEYS}
        self._boards = {b.id: b for b in _SEED_BOARDS}
        self._statuses = {s.id: s for s in _SEED_STATUSES}
        self._note_conditions = True

    # Auth and discovery.

    @property
    def codebase(self) -> str:
        with self._lock:
            return self._codebase

    def set_codebase(self, codebase: str) -> None:
        with self._lock:
            self._codebase = codebase

    @property
    def note_conditions(self) -> bool:
        with self._lock:
            return self._note_conditions

    def set_note_conditions(self, accepted: bool) -> None:
        with self._lock:
            self._note_conditions = accepted

    def company_info(self, company_id: str, site: str) -> Json | None:
        with self._lock:
            name = self._companies.get(company_id)
            if name is None:
                return None
            return {
                "CompanyName": name,
                "Codebase": self._codebase,
                "VersionCode": "v2025.1",
                "VersionNumber": "v4.6.12345",
                "CompanyID": company_id,
                "IsCloud": False,
                "SiteUrl": site,
            }

    def api_member(self, username: str, password: str) -> str | None:
        """The API member for Basic credentials `{companyId}+{publicKey}` / `{privateKey}`."""
        company_id, _, public_key = username.partition("+")
        with self._lock:
            key = self._keys.get((company_id, public_key))
        return key.member if key is not None and key.private_key == password else None

    # Boards and tickets.

    def boards(self) -> list[Json]:
        with self._lock:
            return [_board_json(b) for b in self._boards.values()]

    def board(self, board_id: int) -> Json:
        with self._lock:
            return _board_json(self._board(board_id))

    def board_statuses(self, board_id: int) -> list[Json]:
        with self._lock:
            board = self._board(board_id)
            return [self._status_json(s) for s in self._statuses.values() if s.board_id == board.id]

    def create_ticket(self, board_id: int | None, status_id: int | None, summary: str) -> Json:
        with self._lock:
            board = self._board(board_id if board_id is not None else _SEED_BOARDS[0].id)
            if status_id is None:
                status = next(
                    s for s in self._statuses.values() if s.board_id == board.id and s.default
                )
            else:
                status = self._usable_status(board.id, status_id)
            now = _now()
            ticket = Ticket(self._new_ticket_id(), summary, board.id, status.id, now, "sim")
            if status.closed:
                ticket.closed_date, ticket.closed_by = now, "sim"
            return self._add_ticket(ticket)

    def change_status(
        self, ticket_id: int, status_id: int, member: str
    ) -> tuple[Json, faults.Fault | None]:
        """Apply a validated status change; an injected fault may keep it from being stored."""
        with self._lock:
            ticket = self._ticket(ticket_id)
            status = self._usable_status(ticket.board_id, status_id)
            fault, store = self._take_status_fault()
            changed = replace(ticket)
            changed.status_id = status.id
            changed.last_updated, changed.updated_by = _now(), member
            changed.closed_date, changed.closed_by = (
                (changed.last_updated, member) if status.closed else (None, None)
            )
            if store:
                self._tickets[ticket.id] = changed
            return self._ticket_json(changed), fault

    # Notes.

    def add_note(
        self,
        ticket_id: int,
        text: str,
        flags: Mapping[str, bool],
        notify: bool,
        member: str,
    ) -> tuple[Json, faults.Fault | None]:
        with self._lock:
            ticket = self._ticket(ticket_id)
            note = Note(self._next_note_id, ticket.id, text, flags, notify, _now(), member)
            self._next_note_id += 1
            self._notes[ticket.id].append(note)
            return self._note_json(note), self._take_note_fault()

    def notes(self, ticket_id: int) -> list[Json]:
        with self._lock:
            return [self._note_json(n) for n in self._notes[self._ticket(ticket_id).id]]

    def note(self, ticket_id: int, note_id: int) -> Json:
        with self._lock:
            for note in self._notes[self._ticket(ticket_id).id]:
                if note.id == note_id:
                    return self._note_json(note)
        raise _not_found("ServiceNote")

    # Helpers below expect the lock to be held.

    def _board(self, board_id: int) -> Board:
        board = self._boards.get(board_id)
        if board is None:
            raise _not_found("Board")
        return board

    def _unknown_ticket(self, ticket_id: int) -> ApiError:
        return _not_found("Ticket")

    def _usable_status(self, board_id: int, status_id: int) -> BoardStatus:
        status = self._statuses.get(status_id)
        if status is None or status.board_id != board_id or status.inactive:
            # Unconfirmed: an inactive status is assumed to be refused like a foreign one.
            raise _invalid(
                "ticket",
                "NotFound",
                f"Service Status {status_id} not found for Service Board {board_id}",
                "status/id",
            )
        return status

    def _status_json(self, status: BoardStatus) -> Json:
        return {
            "id": status.id,
            "name": status.name,
            "board": _board_reference(self._boards[status.board_id]),
            "sortOrder": status.sort_order,
            "inactive": status.inactive,
            "closedStatus": status.closed,
            "defaultFlag": status.default,
            "escalationStatus": status.escalation,
            "customerPortalFlag": False,
        }

    def _ticket_json(self, ticket: Ticket) -> Json:
        status = self._statuses[ticket.status_id]
        body: Json = {
            "id": ticket.id,
            "summary": ticket.summary,
            "company": dict(_TICKET_COMPANY),
            "board": _board_reference(self._boards[ticket.board_id]),
            "status": {"id": status.id, "name": status.name},
            "closedFlag": status.closed,
            "_info": {
                "lastUpdated": _timestamp(ticket.last_updated),
                "updatedBy": ticket.updated_by,
            },
        }
        # ConnectWise leaves unset fields out rather than sending nulls.
        if ticket.closed_date is not None:
            body["closedDate"] = _timestamp(ticket.closed_date)
            body["closedBy"] = ticket.closed_by
        return body

    def _note_json(self, note: Note) -> Json:
        return {
            "id": note.id,
            "ticketId": note.ticket_id,
            "text": note.text,
            **note.flags,
            "processNotifications": note.process_notifications,
            # The real create response reports these unreliably; here they follow the display flags.
            "internalFlag": note.flags["internalAnalysisFlag"],
            "externalFlag": note.flags["detailDescriptionFlag"] or note.flags["resolutionFlag"],
            "member": {"identifier": note.created_by, "name": note.created_by},
            "dateCreated": _timestamp(note.date_created),
            "createdBy": note.created_by,
            "_info": {"lastUpdated": _timestamp(note.date_created), "updatedBy": note.created_by},
        }


def _board_json(board: Board) -> Json:
    return {
        "id": board.id,
        "name": board.name,
        "location": dict(_BOARD_LOCATION),
        "department": dict(_BOARD_DEPARTMENT),
        "inactiveFlag": board.inactive,
    }


def _board_reference(board: Board) -> Json:
    return {"id": board.id, "name": board.name}


# --- conditions, ordering and paging ----------------------------------------------------------

Predicate = Callable[[Json], bool]

# Searchable fields per resource and their types; "a/b" walks into nested objects.
_NOTE_FIELDS = {
    "id": "int",
    "ticketId": "int",
    "text": "str",
    "dateCreated": "date",
    "createdBy": "str",
    **dict.fromkeys(_DISPLAY_FLAGS + _OTHER_NOTE_FLAGS, "bool"),
}
_BOARD_FIELDS = {"id": "int", "name": "str", "inactiveFlag": "bool"}
_STATUS_FIELDS = {
    "id": "int",
    "name": "str",
    "sortOrder": "int",
    "inactive": "bool",
    "closedStatus": "bool",
    "defaultFlag": "bool",
    "escalationStatus": "str",
    "board/id": "int",
    "board/name": "str",
}

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<paren>[()])
      | (?P<string>"(?:\\.|[^"\\])*")
      | (?P<date>\[[^\]]*\])
      | (?P<number>-?\d+)
      | (?P<op>!=|<=|>=|=|<|>)
      | (?P<word>[A-Za-z_][\w/]*)
    )""",
    re.VERBOSE,
)
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}
_TEXT_OPS = ("like", "not like", "contains")


def _condition_error(detail: str) -> ApiError:
    # Unconfirmed wording; only the ApiFindCondition code is documented.
    return ApiError(400, "ApiFindCondition", f"conditions is invalid: {detail}")


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while text[position:].strip():
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            raise _condition_error(f"unexpected input at {text[position:].strip()!r}")
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        position = match.end()
    return tokens


class _ConditionParser:
    """Recursive descent over `cmp (and|or cmp)*` with parentheses; `and` binds tighter."""

    def __init__(self, text: str, fields: Mapping[str, str]) -> None:
        self._tokens = _tokenize(text)
        self._position = 0
        self._fields = fields

    def parse(self) -> Predicate:
        predicate = self._any()
        if self._peek() is not None:
            raise _condition_error(f"unexpected {self._peek()!r}")
        return predicate

    def _peek(self) -> str | None:
        if self._position < len(self._tokens):
            return self._tokens[self._position][1]
        return None

    def _next(self, expected: str) -> tuple[str, str]:
        if self._position >= len(self._tokens):
            raise _condition_error(f"expected {expected} but the condition ended")
        token = self._tokens[self._position]
        self._position += 1
        return token

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        if token is not None and token.lower() == word:
            self._position += 1
            return True
        return False

    def _any(self) -> Predicate:
        options = [self._all()]
        while self._keyword("or"):
            options.append(self._all())
        return options[0] if len(options) == 1 else lambda r: any(p(r) for p in options)

    def _all(self) -> Predicate:
        parts = [self._atom()]
        while self._keyword("and"):
            parts.append(self._atom())
        return parts[0] if len(parts) == 1 else lambda r: all(p(r) for p in parts)

    def _atom(self) -> Predicate:
        if self._keyword("("):
            inner = self._any()
            if not self._keyword(")"):
                raise _condition_error("missing ')'")
            return inner
        kind, name = self._next("a field name")
        if kind != "word" or name not in self._fields:
            raise _condition_error(f"unknown field {name!r}")
        return _comparison(name, self._fields[name], self._operator(), self._literal())

    def _operator(self) -> str:
        kind, value = self._next("an operator")
        word = value.lower()
        if kind == "op":
            return value
        if word == "not" and self._keyword("like"):
            return "not like"
        if word in ("like", "contains"):
            return word
        raise _condition_error(f"unknown operator {value!r}")

    def _literal(self) -> tuple[str, Any]:
        kind, value = self._next("a value")
        if kind == "string":
            return "str", re.sub(r"\\(.)", r"\1", value[1:-1], flags=re.DOTALL)
        if kind == "number":
            return "int", int(value)
        if kind == "date":
            return "date", _parse_date(value[1:-1])
        if kind == "word" and value.lower() in ("true", "false"):
            return "bool", value.lower() == "true"
        raise _condition_error(f"bad value {value!r}")


def _parse_date(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _condition_error(f"bad date [{text}]") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _field_value(record: Json, name: str) -> Any:
    value: Any = record
    for part in name.split("/"):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _comparison(name: str, field_type: str, op: str, literal: tuple[str, Any]) -> Predicate:
    literal_type, value = literal
    if op in _TEXT_OPS:
        if field_type != "str" or literal_type != "str":
            raise _condition_error(f"{op} needs a text field and a quoted value")
        pattern = _like_pattern(value if op != "contains" else f"%{value}%")
        negate = op == "not like"
        return lambda r: negate != bool(pattern.fullmatch(str(_field_value(r, name) or "")))
    if literal_type != field_type:
        raise _condition_error(f"{name} is {field_type}, compared with a {literal_type} value")
    compare = _COMPARISONS[op]
    normalise = _NORMALISERS[field_type]
    expected = normalise(value)
    return lambda r: compare(normalise(_field_value(r, name)), expected)


# SQL Server compares text case-insensitively; dates arrive as ISO strings in the records.
_NORMALISERS: dict[str, Callable[[Any], Any]] = {
    "str": lambda v: str(v or "").casefold(),
    "int": lambda v: v,
    "bool": lambda v: bool(v),
    "date": lambda v: v if isinstance(v, datetime) else _parse_date(str(v)),
}


def _like_pattern(like: str) -> re.Pattern[str]:
    """SQL LIKE (`%` any run, `_` one character), case-insensitive; other characters literal."""
    wildcards = {"%": ".*", "_": "."}
    body = "".join(wildcards.get(c) or re.escape(c) for c in like)
    return re.compile(body, re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class _FindQuery:
    predicate: Predicate | None
    order: list[tuple[str, bool]]
    page: int
    page_size: int


def _int_arg(args: Mapping[str, str], name: str, default: int) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, "InvalidObject", f"{name} must be an integer") from None


def _parse_order(text: str, fields: Mapping[str, str]) -> list[tuple[str, bool]]:
    order: list[tuple[str, bool]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, direction = part.partition(" ")
        direction = direction.strip().lower() or "asc"
        if name not in fields or direction not in ("asc", "desc"):
            raise ApiError(400, "InvalidObject", f"orderBy {part!r} is not supported")
        order.append((name, direction == "desc"))
    return order or [("id", False)]


def _parse_find_query(args: Mapping[str, str], fields: Mapping[str, str]) -> _FindQuery:
    conditions = args.get("conditions", "").strip()
    page = _int_arg(args, "page", 1)
    page_size = min(_int_arg(args, "pageSize", _DEFAULT_PAGE_SIZE), _MAX_PAGE_SIZE)
    if page < 1 or page_size < 1:
        raise ApiError(400, "InvalidObject", "page and pageSize must be positive")
    return _FindQuery(
        predicate=_ConditionParser(conditions, fields).parse() if conditions else None,
        order=_parse_order(args.get("orderBy", ""), fields),
        page=page,
        page_size=page_size,
    )


def _select(records: Iterable[Json], query: _FindQuery) -> list[Json]:
    chosen = [r for r in records if query.predicate is None or query.predicate(r)]
    # Stable sorts applied from the least significant key give a multi-key order.
    for name, descending in reversed(query.order):
        chosen.sort(key=lambda r, n=name: _sort_key(_field_value(r, n)), reverse=descending)
    return chosen


def _sort_key(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _page_url(page: int, page_size: int) -> str:
    kept = [(k, v) for k, v in request.args.items(multi=True) if k not in ("page", "pageSize")]
    query = urlencode([*kept, ("page", page), ("pageSize", page_size)], quote_via=quote)
    return f"{request.base_url}?{query}"


def _link_header(total: int, page: int, page_size: int) -> str | None:
    last = max(1, -(-total // page_size))
    if last == 1:
        return None
    links: list[tuple[str, int]] = []
    if page > 1:
        links += [("first", 1), ("prev", min(page - 1, last))]
    if page < last:
        links += [("next", page + 1), ("last", last)]
    return ", ".join(f'<{_page_url(n, page_size)}>; rel="{rel}"' for rel, n in links)


def _paged(records: Iterable[Json], fields: Mapping[str, str]) -> Response:
    query = _parse_find_query(request.args, fields)
    chosen = _select(records, query)
    start = (query.page - 1) * query.page_size
    response = jsonify(chosen[start : start + query.page_size])
    link = _link_header(len(chosen), query.page, query.page_size)
    if link is not None:
        response.headers["Link"] = link
    return response


# --- request plumbing --------------------------------------------------------------------------


def _state() -> SimState:
    state: SimState = current_app.extensions[_EXTENSION]
    return state


def _error_response(error: ApiError) -> Response:
    response = jsonify(error.body())
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


def _http_error(error: HTTPException) -> Response:
    code = (error.name or "Error").replace(" ", "")
    # Keep headers such as a 405's Allow; the body is ours.
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    return _error_response(
        ApiError(error.code or 500, code, error.description or code, None, headers)
    )


def _json_body() -> Any:
    body = request.get_json(force=True, silent=True)
    if body is None:
        raise ApiError(400, "InvalidObject", "The request body is not valid JSON")
    return body


def _pop_codebase(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    if values is not None and "codebase" in values:
        g.codebase = values.pop("codebase") + "/"


def _authenticate() -> None:
    """Codebase, Basic credentials and clientId checks for every apis/3.0 call."""
    if "codebase" not in g:
        return
    state = _state()
    if g.codebase != state.codebase:
        raise ApiError(404, "NotFound", f"Codebase {g.codebase} not found on this site")
    auth = request.authorization
    member = None
    if auth is not None and auth.type == "basic":
        member = state.api_member(auth.username or "", auth.password or "")
    if member is None:
        raise ApiError(401, "Unauthorized", "Authentication failed: invalid API member credentials")
    if not request.headers.get("clientId", "").strip():
        # Unconfirmed wording; it only has to be told apart from bad credentials.
        raise ApiError(401, "Unauthorized", "A clientId header is required on every request")
    g.member = member


def _shared_error(status: int, message: str, headers: Mapping[str, str]) -> Response:
    """An error of faults.py's (a control-API refusal or an injected failure), ConnectWise-style."""
    return _error_response(ApiError(status, _SHARED_ERROR_CODES[status], message, headers=headers))


def _ticket_in_path() -> int | None:
    match = _TICKET_IN_PATH.search(request.path)
    return int(match.group(1)) if match else None


# --- vendor endpoints --------------------------------------------------------------------------


def company_info(company_id: str) -> Response:
    # An unknown company is 200 with a JSON null, not 404.
    return jsonify(_state().company_info(company_id, request.host))


def get_ticket(ticket_id: int) -> Response:
    return jsonify(_state().ticket(ticket_id))


def patch_ticket(ticket_id: int) -> Response:
    _state().ticket(ticket_id)  # 404 before judging the body, as for an unknown record
    status_id = _status_from_patch(_json_body())
    ticket, fault = _state().change_status(ticket_id, status_id, g.member)
    faults.after_write(fault)
    return jsonify(ticket)


def _status_from_patch(operations: Any) -> int:
    """The status id a JSON Patch asks for (the last one wins, as operations apply in order)."""
    if not isinstance(operations, list) or not operations:
        raise _invalid("ticket", "InvalidObject", "A non-empty JSON Patch array is required")
    return [_patched_status(operation) for operation in operations][-1]


def _patched_status(operation: Any) -> int:
    # Only status replacement is simulated; refusing other paths beats silently ignoring them.
    if not isinstance(operation, dict) or str(operation.get("op", "")).lower() != "replace":
        raise _invalid("ticket", "InvalidObject", "Only 'replace' operations are supported")
    path = str(operation.get("path", "")).lstrip("/").lower()
    value = operation.get("value")
    if path == "status" and isinstance(value, dict):
        value = value.get("id")
    elif path != "status/id":
        message = f"Patching {path or 'an empty path'!r} is not simulated"
        raise _invalid("ticket", "InvalidObject", message, path)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _invalid("ticket", "InvalidObject", "Status id must be an integer", "status/id")
    return value


def list_notes(ticket_id: int) -> Response:
    if request.args.get("conditions") and not _state().note_conditions:
        raise _condition_error("conditions are not accepted on notes here")
    return _paged(_state().notes(ticket_id), _NOTE_FIELDS)


def count_notes(ticket_id: int) -> Response:
    query = _parse_find_query(request.args, _NOTE_FIELDS)
    return jsonify({"count": len(_select(_state().notes(ticket_id), query))})


def get_note(ticket_id: int, note_id: int) -> Response:
    return jsonify(_state().note(ticket_id, note_id))


def create_note(ticket_id: int) -> tuple[Response, int]:
    _state().ticket(ticket_id)
    body = _json_body()
    if not isinstance(body, dict):
        raise _invalid("serviceNote", "InvalidObject", "A ServiceNote object is required")
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise _invalid("serviceNote", "NullValue", "The text field is required.", "text")
    flags = {name: _flag(body, name) for name in _DISPLAY_FLAGS + _OTHER_NOTE_FLAGS}
    if not any(flags[name] for name in _DISPLAY_FLAGS):
        raise _invalid(
            "serviceNote",
            "InvalidObject",
            "Please choose where to display the notes in order to save this record.",
        )
    notify = _flag(body, "processNotifications", default=True)
    note, fault = _state().add_note(ticket_id, text, flags, notify, g.member)
    faults.after_write(fault)
    return jsonify(note), 201


def _flag(body: Json, name: str, default: bool = False) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise _invalid("serviceNote", "InvalidObject", f"{name} must be true or false", name)
    return value


def list_boards() -> Response:
    return _paged(_state().boards(), _BOARD_FIELDS)


def get_board(board_id: int) -> Response:
    return jsonify(_state().board(board_id))


def list_board_statuses(board_id: int) -> Response:
    return _paged(_state().board_statuses(board_id), _STATUS_FIELDS)


# --- control endpoints -------------------------------------------------------------------------


def sim_create_ticket() -> tuple[Response, int]:
    summary, (board_id, status_id) = faults.ticket_request(
        _MAX_SUMMARY, "board_id", "status_id", read=_json_body
    )
    return jsonify(_state().create_ticket(board_id, status_id, summary)), 201


def put_conditions() -> Response:
    accepted = faults.control_body(frozenset({"notes"}), _json_body).get("notes", True)
    if not isinstance(accepted, bool):
        raise faults.ControlError("notes must be true or false")
    _state().set_note_conditions(accepted)
    return jsonify({"notes": _state().note_conditions})


def _vendor_content_type(response: Response) -> Response:
    """ConnectWise's media type on every successful API answer, in the version asked for."""
    if "codebase" in g and 200 <= response.status_code < 300 and response.is_json:
        asked = _ACCEPT_VERSION.search(request.headers.get("Accept", ""))
        version = asked.group(1) if asked else DEFAULT_VERSION
        response.headers["Content-Type"] = f"{VENDOR_MEDIA_TYPE}; version={version}"
    return response


def put_codebase() -> Response:
    body = faults.control_body(frozenset({"codebase"}), _json_body)
    codebase = (faults.optional(body, "codebase", str) or "").strip("/") + "/"
    if not _CODEBASE.fullmatch(codebase):
        raise faults.ControlError("codebase must look like 'v2025_2/'")
    _state().set_codebase(codebase)
    return jsonify({"codebase": codebase})


# --- app factory -------------------------------------------------------------------------------

_ROUTES: tuple[tuple[str, Callable[..., Any], tuple[str, ...]], ...] = (
    ("/login/companyinfo/<company_id>", company_info, ("GET",)),
    (f"{_API_PREFIX}/service/tickets/<int:ticket_id>", get_ticket, ("GET",)),
    (f"{_API_PREFIX}/service/tickets/<int:ticket_id>", patch_ticket, ("PATCH",)),
    (f"{_API_PREFIX}/service/tickets/<int:ticket_id>/notes", list_notes, ("GET",)),
    (f"{_API_PREFIX}/service/tickets/<int:ticket_id>/notes", create_note, ("POST",)),
    (f"{_API_PREFIX}/service/tickets/<int:ticket_id>/notes/count", count_notes, ("GET",)),
    (f"{_API_PREFIX}/service/tickets/<int:ticket_id>/notes/<int:note_id>", get_note, ("GET",)),
    (f"{_API_PREFIX}/service/boards", list_boards, ("GET",)),
    (f"{_API_PREFIX}/service/boards/<int:board_id>", get_board, ("GET",)),
    (f"{_API_PREFIX}/service/boards/<int:board_id>/statuses", list_board_statuses, ("GET",)),
    ("/__sim/tickets", sim_create_ticket, ("POST",)),
    ("/__sim/codebase", put_codebase, ("PUT",)),
    ("/__sim/conditions", put_conditions, ("PUT",)),
)


def create_app(state: SimState | None = None) -> Flask:
    """Build the simulator app around `state` (a freshly seeded one by default)."""
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep ConnectWise's field order
    app.extensions[_EXTENSION] = state if state is not None else SimState()
    for rule, view, methods in _ROUTES:
        app.add_url_rule(rule, view_func=view, methods=list(methods))
    app.url_value_preprocessor(_pop_codebase)
    faults.FaultControls(
        state=_state,
        ticket_id=_ticket_in_path,
        error=_shared_error,
        # The log's shape predates auth_headers and the hidden Proxy-Authorization; kept as is.
        hidden_headers=frozenset({"authorization", "cookie"}),
        log_auth_headers=False,
        rate_limit_message="Server is over capacity, retry after {seconds} seconds",
        read_body=_json_body,
    ).install(app)
    app.before_request(_authenticate)  # after the request faults
    app.register_error_handler(ApiError, _error_response)
    app.register_error_handler(HTTPException, _http_error)
    app.after_request(_vendor_content_type)
    return app


def main(argv: list[str] | None = None) -> None:
    run_cli(create_app, argv, "ConnectWise simulator", 8081, "ConnectWise PSA API simulator")


if __name__ == "__main__":
    main()
