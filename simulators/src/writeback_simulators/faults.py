"""Fault injection, the request log, the ticket store and the control routes shared by the PSA
simulators.

A simulator's state subclasses `PsaState` (a lock, a `FaultBook`, a `RequestLog`, the tickets and
their notes), and its Flask app gets a `FaultControls` with the vendor specifics: how to find the
ticket a request is about, how its errors look, and which headers and fields are secret.
`FaultControls.install()` then adds:

  before_request  vendor calls (every path but /__sim/...) pass the vendor's own `admit` check,
                  if any, then are matched against the faults: `slow` sleeps, then
                  `rate_limit`/`server_error` answer instead of the vendor
  after_request   vendor calls are logged: method, path, query, status, ticket_id, body (JSON
                  only, so form bodies such as OAuth token requests never are), headers without
                  the secret ones, auth_headers (the names of the secret headers sent, never their
                  values; unless `log_auth_headers` is off) and faults (kinds applied)
  POST   /__sim/reset              `PsaState.reset()`: no tickets, faults or log entries, and the
                                    vendor's seed data again; 204
  GET    /__sim/tickets/<id>       `PsaState.ticket_with_notes()`
  POST   /__sim/faults             {"kind", "ticket_id"?, "method"?, "path_contains"?, "times"?,
                                    kind params} -> 201 fault (with "id")
  GET    /__sim/faults             faults in creation order, "times" = matches left (-1 = endless)
  DELETE /__sim/faults[/<id>]      remove all faults / one fault -> 204
  GET    /__sim/requests?ticket_id= the vendor-call log, oldest first
  a WSGI wrapper that closes the connection without an answer after a `drop_after_store` write

Write faults (`status_not_applied`, `drop_after_store`) are taken by the simulator itself, inside
a write that succeeded (`PsaState._take_status_fault()` / `_take_note_fault()`), and reported with
`after_write()`.

For the simulators' own control routes (the Anthropic stub's too): `control_body()`, `optional()`,
`parse_times()` and `ticket_request()` (POST /__sim/tickets) read control-API bodies, raising
`ControlError`; `http_error_handler()` answers werkzeug's errors in the vendor's shape.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger(__name__)

Json = dict[str, Any]
# (status, message, extra headers) -> a response in the vendor's error shape
ErrorResponder = Callable[[int, str, Mapping[str, str]], Response]
# Reads a control request's body: its JSON, None if it is not JSON, or the vendor's error.
BodyReader = Callable[[], Any]

SERVER_ERROR_STATUSES = (500, 502, 503, 504)
DELAY_KINDS = frozenset({"slow"})
FAILURE_KINDS = frozenset({"rate_limit", "server_error"})
STATUS_WRITE_KINDS = frozenset({"status_not_applied", "drop_after_store"})
NOTE_WRITE_KINDS = frozenset({"drop_after_store"})
FAULT_KINDS = DELAY_KINDS | FAILURE_KINDS | STATUS_WRITE_KINDS
FAULT_KEYS = frozenset({"kind", "ticket_id", "method", "path_contains", "times"})
# Kind-specific fault parameters and their defaults.
FAULT_PARAMS: dict[str, dict[str, float]] = {
    "rate_limit": {"retry_after": 1},
    "server_error": {"status": 500},
    "slow": {"delay": 1.0},
}
ALL_FAULT_PARAMS = frozenset(name for params in FAULT_PARAMS.values() for name in params)
METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
DEFAULT_HIDDEN_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
REDACTED = "[redacted]"
_DROP_KEY = "writeback.sim.drop_connection"
_REQUEST_LOG_LIMIT = 20_000


class ControlError(Exception):
    """A control-API request the simulator refuses; answered in the vendor's error shape."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Call:
    """The parts of a vendor request that faults are matched on."""

    method: str
    path: str
    ticket_id: int | None


@dataclass
class Fault:
    id: int
    kind: str
    times: int
    ticket_id: int | None = None
    method: str | None = None
    path_contains: str | None = None
    params: Mapping[str, float] = field(default_factory=dict)

    def matches(self, kinds: Collection[str], call: Call) -> bool:
        return (
            self.times != 0
            and self.kind in kinds
            and (self.method is None or self.method == call.method)
            and (self.ticket_id is None or self.ticket_id == call.ticket_id)
            and (self.path_contains is None or self.path_contains in call.path)
        )

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "kind": self.kind,
            "ticket_id": self.ticket_id,
            "method": self.method,
            "path_contains": self.path_contains,
            "times": self.times,
            **self.params,
        }


class FaultBook:
    """The faults switched on, in creation order. Thread-safe; ids never restart."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._next_id = 1

    def add(self, spec: Json) -> Json:
        """Add a fault from a control-API body; raises ControlError for an invalid one."""
        kind, times, ticket_id, method, path_contains, params = _parse_fault(spec)
        with self._lock:
            fault = Fault(self._next_id, kind, times, ticket_id, method, path_contains, params)
            self._next_id += 1
            self._faults.append(fault)
            return fault.to_json()

    def all(self) -> list[Json]:
        with self._lock:
            return [f.to_json() for f in self._faults]

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            kept = [f for f in self._faults if f.id != fault_id]
            found = len(kept) != len(self._faults)
            self._faults = kept
            return found

    def clear(self) -> None:
        with self._lock:
            self._faults = []

    def take(self, kinds: Collection[str], call: Call | None) -> Fault | None:
        """The first fault of `kinds` matching `call`, using up one of its `times`."""
        if call is None:
            return None
        with self._lock:
            for fault in self._faults:
                if fault.matches(kinds, call):
                    if fault.times > 0:
                        fault.times -= 1
                    logger.info(
                        "Injecting fault %s (%s) into %s %s",
                        fault.id,
                        fault.kind,
                        call.method,
                        call.path,
                    )
                    return fault
        return None


class RequestLog:
    """Vendor calls, oldest first, bounded. Thread-safe."""

    def __init__(self, limit: int = _REQUEST_LOG_LIMIT) -> None:
        self._lock = threading.Lock()
        self._entries: deque[Json] = deque(maxlen=limit)

    def record(self, entry: Json) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self, ticket_id: int | None = None) -> list[Json]:
        with self._lock:
            return [e for e in self._entries if ticket_id is None or e["ticket_id"] == ticket_id]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class _Record(Protocol):
    @property
    def id(self) -> int: ...


TicketT = TypeVar("TicketT", bound=_Record)
NoteT = TypeVar("NoteT")


class PsaState(ABC, Generic[TicketT, NoteT]):
    """What every PSA simulator's state holds besides its vendor records: a lock (the server is
    threaded, so every public method takes it), the faults, the request log and the tickets with
    their notes. A reset empties them all and seeds the vendor records again (`_seed()`)."""

    def __init__(self, first_ticket_id: int) -> None:
        self._lock = threading.Lock()
        # Ids never restart, so a stale id from an earlier test never names a new ticket.
        self._next_ticket_id = first_ticket_id
        self.faults = FaultBook()
        self.requests = RequestLog()
        self._tickets: dict[int, TicketT] = {}
        self._notes: dict[int, list[NoteT]] = {}  # by ticket id, in stored order
        self._seed()

    @abstractmethod
    def _seed(self) -> None:
        """(Re)create the vendor records other than tickets from the seed data."""

    @abstractmethod
    def _unknown_ticket(self, ticket_id: int) -> Exception:
        """The vendor's error for a ticket id it does not know."""

    @abstractmethod
    def _ticket_json(self, ticket: TicketT) -> Json: ...

    @abstractmethod
    def _note_json(self, note: NoteT) -> Json: ...

    def reset(self) -> None:
        with self._lock:
            self._tickets.clear()
            self._notes.clear()
            self.faults.clear()
            self.requests.clear()
            self._seed()

    def ticket(self, ticket_id: int) -> Json:
        with self._lock:
            return self._ticket_json(self._ticket(ticket_id))

    def ticket_with_notes(self, ticket_id: int) -> Json:
        """The ticket plus "notes" in stored order (GET /__sim/tickets/<id>)."""
        with self._lock:
            ticket = self._ticket(ticket_id)
            notes = [self._note_json(n) for n in self._notes[ticket.id]]
            return {**self._ticket_json(ticket), "notes": notes}

    # Helpers below expect the lock to be held.

    def _new_ticket_id(self) -> int:
        ticket_id = self._next_ticket_id
        self._next_ticket_id += 1
        return ticket_id

    def _add_ticket(self, ticket: TicketT) -> Json:
        """Store a new ticket (its id from `_new_ticket_id()`), with no notes yet; its JSON."""
        self._tickets[ticket.id] = ticket
        self._notes[ticket.id] = []
        return self._ticket_json(ticket)

    def _ticket(self, ticket_id: int) -> TicketT:
        ticket = self._tickets.get(ticket_id)
        if ticket is None:
            raise self._unknown_ticket(ticket_id)
        return ticket

    # Write faults, taken inside a write that succeeded.

    def _take_status_fault(self) -> tuple[Fault | None, bool]:
        """A status write fault for the current call, and whether the change is to be stored."""
        fault = self.faults.take(STATUS_WRITE_KINDS, current_call())
        return fault, fault is None or fault.kind != "status_not_applied"

    def _take_note_fault(self) -> Fault | None:
        return self.faults.take(NOTE_WRITE_KINDS, current_call())


# --- control-API body helpers -------------------------------------------------------------------


def control_body(allowed: Iterable[str], read: BodyReader | None = None) -> Json:
    """The JSON object sent to a control route ({} without a body); unknown keys are typos.

    `read` is the vendor's own body reader, for simulators that answer a body that is not JSON
    with their usual error rather than "A JSON object is required".
    """
    if not request.get_data():
        return {}
    body = read() if read is not None else request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise ControlError("A JSON object is required")
    unknown = set(body) - set(allowed)
    if unknown:
        raise ControlError(f"Unknown fields: {', '.join(sorted(unknown))}")
    return body


def optional(body: Json, name: str, kind: type) -> Any:
    """`body[name]` if present and of `kind` (booleans are not numbers here), else None."""
    value = body.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise ControlError(f"{name} must be of type {kind.__name__}")
    return value


def parse_times(body: Json) -> int:
    """How often a fault (or a scripted answer) applies: `times`, default 1, -1 = endless."""
    times = body.get("times", 1)
    if not isinstance(times, int) or isinstance(times, bool) or (times < 1 and times != -1):
        raise ControlError("times must be a positive integer, or -1 for until removed")
    return times


def ticket_request(
    max_summary: int, *id_fields: str, read: BodyReader | None = None
) -> tuple[str, list[int | None]]:
    """The summary and the ids (`id_fields`, checked in that order) of a POST /__sim/tickets."""
    body = control_body({"summary", *id_fields}, read)
    summary = optional(body, "summary", str) or "Simulated ticket"
    if len(summary) > max_summary:
        raise ControlError(f"summary is limited to {max_summary} characters")
    return summary, [optional(body, name, int) for name in id_fields]


def _parse_fault(
    body: Json,
) -> tuple[str, int, int | None, str | None, str | None, dict[str, float]]:
    unknown = set(body) - FAULT_KEYS - ALL_FAULT_PARAMS
    if unknown:
        raise ControlError(f"Unknown fields: {', '.join(sorted(unknown))}")
    kind = body.get("kind")
    if kind not in FAULT_KINDS:
        raise ControlError(f"kind must be one of {', '.join(sorted(FAULT_KINDS))}")
    defaults = FAULT_PARAMS.get(kind, {})
    misplaced = (ALL_FAULT_PARAMS - defaults.keys()) & body.keys()
    if misplaced:
        raise ControlError(f"{kind} faults take no {', '.join(sorted(misplaced))}")
    times = parse_times(body)
    method = optional(body, "method", str)
    if method is not None and method.upper() not in METHODS:
        raise ControlError(f"method must be one of {', '.join(sorted(METHODS))}")
    params = {name: _fault_param(kind, name, body.get(name, d)) for name, d in defaults.items()}
    return (
        kind,
        times,
        optional(body, "ticket_id", int),
        method and method.upper(),
        optional(body, "path_contains", str),
        params,
    )


def _fault_param(kind: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ControlError(f"{name} must be a number")
    if name == "status" and value not in SERVER_ERROR_STATUSES:
        raise ControlError(f"status must be one of {list(SERVER_ERROR_STATUSES)}")
    if name == "retry_after" and (not isinstance(value, int) or value < 0):
        raise ControlError("retry_after must be a whole number of seconds >= 0")
    if name == "delay" and not 0 <= value <= 60:
        raise ControlError(f"{kind} delay must be between 0 and 60 seconds")
    return value


# --- per-request plumbing -----------------------------------------------------------------------


def is_vendor_call() -> bool:
    return not request.path.startswith("/__sim/")


def current_call() -> Call | None:
    """The vendor call being handled (None on control routes)."""
    call: Call | None = g.get("call")
    return call


def after_write(fault: Fault | None) -> None:
    """Report a write fault the simulator took; `drop_after_store` closes the connection."""
    if fault is None:
        return
    g.faults.append(fault.kind)
    if fault.kind == "drop_after_store":
        request.environ[_DROP_KEY] = True


def redact(value: Any, secret_fields: Collection[str]) -> Any:
    """`value` with the values of secret keys (compared case-insensitively) replaced."""
    if isinstance(value, dict):
        return {
            k: REDACTED if k.lower() in secret_fields else redact(v, secret_fields)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v, secret_fields) for v in value]
    return value


class _SimulatedDisconnect(ConnectionAbortedError):
    """Tells the WSGI server the connection is gone, so it sends nothing more."""


class DropConnection:
    """WSGI middleware: after a `drop_after_store` write, close the socket with no response."""

    def __init__(self, app: WSGIApplication) -> None:
        self._app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        result = self._app(environ, start_response)
        if not environ.get(_DROP_KEY):
            return result
        close = getattr(result, "close", None)
        if close is not None:
            close()
        # Only werkzeug's server exposes the socket; it treats the ConnectionError raised below
        # as a client hang-up, so it neither writes a response nor logs a traceback.
        connection = environ.get("werkzeug.socket")
        if connection is not None:
            try:
                connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            except OSError:
                logger.debug("Connection already gone before the simulated drop")
        raise _SimulatedDisconnect("simulated connection drop after store")


def http_error_handler(error: ErrorResponder) -> Callable[[HTTPException], Response]:
    """Werkzeug's own errors (unknown route, wrong method) in the vendor's error shape."""

    def handle(exception: HTTPException) -> Response:
        # Keep headers such as a 405's Allow; the body is the vendor's.
        headers = {k: v for k, v in exception.get_headers() if k.lower() != "content-type"}
        return error(exception.code or 500, exception.description or "Error", headers)

    return handle


@dataclass(frozen=True)
class FaultControls:
    """What `install()` needs from a simulator."""

    state: Callable[[], PsaState[Any, Any]]  # the app's state (looked up per request)
    ticket_id: Callable[[], int | None]  # the ticket the current vendor request is about
    error: ErrorResponder
    hidden_headers: frozenset[str] = DEFAULT_HIDDEN_HEADERS  # lower-case; values never logged
    secret_fields: frozenset[str] = frozenset()  # lower-case query/JSON keys, logged redacted
    log_auth_headers: bool = True  # log the names of the hidden headers sent as auth_headers
    # The 429 message of a `rate_limit` fault; {seconds} is its retry_after.
    rate_limit_message: str = "Rate limit exceeded, retry after {seconds} seconds (simulated)"
    read_body: BodyReader | None = None  # see control_body()
    # The vendor's own limits on calls (Autotask's thread limit), checked on every vendor call
    # before its faults: raises the vendor's refusal, which is answered and logged as any other.
    admit: Callable[[], None] | None = None

    def install(self, app: Flask) -> None:
        app.before_request(self._inject_request_faults)
        app.after_request(self._record_request)
        app.register_error_handler(ControlError, self._control_error)
        routes: tuple[tuple[str, Callable[..., Any], str], ...] = (
            ("/__sim/reset", self._reset, "POST"),
            ("/__sim/tickets/<int:ticket_id>", self._ticket_with_notes, "GET"),
            ("/__sim/faults", self._create_fault, "POST"),
            ("/__sim/faults", self._list_faults, "GET"),
            ("/__sim/faults", self._clear_faults, "DELETE"),
            ("/__sim/faults/<int:fault_id>", self._delete_fault, "DELETE"),
            ("/__sim/requests", self._list_requests, "GET"),
        )
        for rule, view, method in routes:
            endpoint = f"sim_{view.__name__.lstrip('_')}"
            app.add_url_rule(rule, endpoint, view_func=view, methods=[method])
        app.wsgi_app = DropConnection(app.wsgi_app)  # type: ignore[method-assign]

    # Hooks.

    def _inject_request_faults(self) -> Response | None:
        """Apply `slow`, then `rate_limit`/`server_error`, to vendor calls before handling them."""
        if not is_vendor_call():
            return None
        g.call = Call(request.method, request.path, self.ticket_id())
        g.faults = []
        if self.admit is not None:
            self.admit()
        book = self.state().faults
        slow = book.take(DELAY_KINDS, g.call)
        if slow is not None:
            g.faults.append(slow.kind)
            time.sleep(slow.params["delay"])
        failure = book.take(FAILURE_KINDS, g.call)
        if failure is None:
            return None
        g.faults.append(failure.kind)
        if failure.kind == "rate_limit":
            retry_after = int(failure.params["retry_after"])
            return self.error(
                429,
                self.rate_limit_message.format(seconds=retry_after),
                {"Retry-After": str(retry_after)},
            )
        return self.error(
            int(failure.params["status"]),
            "An error occurred processing the request (simulated)",
            {},
        )

    def _record_request(self, response: Response) -> Response:
        call = current_call()
        if call is None:
            return response
        headers = dict(request.headers.items())
        entry: Json = {
            "method": request.method,
            "path": request.path,
            "query": redact(request.args.to_dict(), self.secret_fields),
            "status": response.status_code,
            "ticket_id": call.ticket_id,
            "body": redact(request.get_json(force=True, silent=True), self.secret_fields),
            "headers": {k: v for k, v in headers.items() if k.lower() not in self.hidden_headers},
        }
        if self.log_auth_headers:
            entry["auth_headers"] = sorted(k for k in headers if k.lower() in self.hidden_headers)
        entry["faults"] = list(g.faults)
        self.state().requests.record(entry)
        return response

    def _control_error(self, error: ControlError) -> Response:
        return self.error(error.status, error.message, {})

    # Control routes.

    def _reset(self) -> tuple[str, int]:
        self.state().reset()
        return "", 204

    def _ticket_with_notes(self, ticket_id: int) -> Response:
        return jsonify(self.state().ticket_with_notes(ticket_id))

    def _create_fault(self) -> tuple[Response, int]:
        body = control_body(FAULT_KEYS | ALL_FAULT_PARAMS, self.read_body)
        return jsonify(self.state().faults.add(body)), 201

    def _list_faults(self) -> Response:
        return jsonify(self.state().faults.all())

    def _clear_faults(self) -> tuple[str, int]:
        self.state().faults.clear()
        return "", 204

    def _delete_fault(self, fault_id: int) -> tuple[str, int]:
        if not self.state().faults.remove(fault_id):
            raise ControlError(f"Fault {fault_id} not found", 404)
        return "", 204

    def _list_requests(self) -> Response:
        raw = request.args.get("ticket_id")
        if raw is not None and not raw.isdigit():
            raise ControlError("ticket_id must be an integer")
        return jsonify(self.state().requests.entries(int(raw) if raw is not None else None))
