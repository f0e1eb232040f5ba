"""Fault injection, the request log and the control routes shared by the PSA simulators.

A simulator keeps a `FaultBook` and a `RequestLog` in its state and calls `install()` on its Flask
app with three vendor specifics: how to find the ticket a request is about, how its errors look,
and which headers and fields are secret. `install()` then adds:

  before_request  vendor calls (every path but /__sim/...) are matched against the faults:
                  `slow` sleeps, then `rate_limit`/`server_error` answer instead of the vendor
  after_request   vendor calls are logged: method, path, query, status, ticket_id, body (JSON
                  only, so form bodies such as OAuth token requests never are), headers without
                  the secret ones, auth_headers (the names of the secret headers sent, never their
                  values) and faults (kinds applied)
  POST   /__sim/faults             {"kind", "ticket_id"?, "method"?, "path_contains"?, "times"?,
                                    kind params} -> 201 fault (with "id")
  GET    /__sim/faults             faults in creation order, "times" = matches left (-1 = endless)
  DELETE /__sim/faults[/<id>]      remove all faults / one fault -> 204
  GET    /__sim/requests?ticket_id= the vendor-call log, oldest first
  a WSGI wrapper that closes the connection without an answer after a `drop_after_store` write

Write faults (`status_not_applied`, `drop_after_store`) are taken by the simulator itself, inside
a write that succeeded (`FaultBook.take(STATUS_WRITE_KINDS, current_call())`), and reported with
`after_write()`.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, g, jsonify, request

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger(__name__)

Json = dict[str, Any]
# (status, message, extra headers) -> a response in the vendor's error shape
ErrorResponder = Callable[[int, str, Mapping[str, str]], Response]

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
ALWAYS_HIDDEN_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
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


# --- control-API body helpers -------------------------------------------------------------------


def control_body(allowed: Iterable[str]) -> Json:
    """The JSON object sent to a control route ({} without a body); unknown keys are typos."""
    if not request.get_data():
        return {}
    body = request.get_json(force=True, silent=True)
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
    times = body.get("times", 1)
    if not isinstance(times, int) or isinstance(times, bool) or (times < 1 and times != -1):
        raise ControlError("times must be a positive integer, or -1 for until removed")
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


@dataclass(frozen=True)
class FaultControls:
    """What `install()` needs from a simulator."""

    faults: Callable[[], FaultBook]  # the app's fault book (looked up per request)
    requests: Callable[[], RequestLog]
    ticket_id: Callable[[], int | None]  # the ticket the current vendor request is about
    error: ErrorResponder
    hidden_headers: frozenset[str] = frozenset()  # lower-case; never logged, only their names
    secret_fields: frozenset[str] = frozenset()  # lower-case query/JSON keys, logged redacted

    def install(self, app: Flask) -> None:
        app.before_request(self._inject_request_faults)
        app.after_request(self._record_request)
        app.register_error_handler(ControlError, self._control_error)
        routes: tuple[tuple[str, Callable[..., Any], str], ...] = (
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
        book = self.faults()
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
                f"Rate limit exceeded, retry after {retry_after} seconds (simulated)",
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
        hidden = ALWAYS_HIDDEN_HEADERS | self.hidden_headers
        headers = dict(request.headers.items())
        self.requests().record(
            {
                "method": request.method,
                "path": request.path,
                "query": redact(request.args.to_dict(), self.secret_fields),
                "status": response.status_code,
                "ticket_id": call.ticket_id,
                "body": redact(request.get_json(force=True, silent=True), self.secret_fields),
                "headers": {k: v for k, v in headers.items() if k.lower() not in hidden},
                "auth_headers": sorted(k for k in headers if k.lower() in hidden),
                "faults": list(g.faults),
            }
        )
        return response

    def _control_error(self, error: ControlError) -> Response:
        return self.error(error.status, error.message, {})

    # Control routes.

    def _create_fault(self) -> tuple[Response, int]:
        body = control_body(FAULT_KEYS | ALL_FAULT_PARAMS)
        return jsonify(self.faults().add(body)), 201

    def _list_faults(self) -> Response:
        return jsonify(self.faults().all())

    def _clear_faults(self) -> tuple[str, int]:
        self.faults().clear()
        return "", 204

    def _delete_fault(self, fault_id: int) -> tuple[str, int]:
        if not self.faults().remove(fault_id):
            raise ControlError(f"Fault {fault_id} not found", 404)
        return "", 204

    def _list_requests(self) -> Response:
        raw = request.args.get("ticket_id")
        if raw is not None and not raw.isdigit():
            raise ControlError("ticket_id must be an integer")
        return jsonify(self.requests().entries(int(raw) if raw is not None else None))
