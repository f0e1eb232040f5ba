"""HTTP plumbing shared by the PSA providers: one session per thread, timeouts on every call,
no redirects, connections pinned to the address the SSRF guard vetted, and transport failures
turned into domain errors."""

from __future__ import annotations

import copy
import logging
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import create_connection

from writeback.domain.errors import (
    PsaAmbiguousError,
    PsaAuthError,
    PsaNotFound,
    PsaRejected,
    PsaTransientError,
)

log = logging.getLogger(__name__)

# (host, port) -> the vetted address to connect to (ssrf.AddressVetter); raises to refuse.
Vet = Callable[[str, int], str]


class PinnedAdapter(HTTPAdapter):
    """A transport adapter whose connections resolve and vet their host themselves, then
    connect to exactly the vetted address: no DNS-rebinding window between check and connect.
    TLS still verifies the certificate against the host name (only the socket is pinned).
    Chosen over requests-hardened because the vetting is our policy (allowlisted networks and
    names, metadata never, embedded IPv4) and a subclass of two urllib3 classes carries it."""

    def __init__(self, vet: Vet) -> None:
        super().__init__()
        connections = {
            "http": type("VettedHTTPConnection", (_Vetted, HTTPConnection), {"vet": vet}),
            "https": type("VettedHTTPSConnection", (_Vetted, HTTPSConnection), {"vet": vet}),
        }
        self.poolmanager.pool_classes_by_scheme = {
            "http": type(
                "VettedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": connections["http"]}
            ),
            "https": type(
                "VettedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": connections["https"]}
            ),
        }


class _Vetted(HTTPConnection):
    vet: Vet

    def _new_conn(self) -> socket.socket:
        """urllib3's own, connecting to the vetted address instead of resolving again."""
        try:
            address = type(self).vet(self._dns_host, self.port)
            return create_connection(
                (address, self.port),
                self.timeout,
                source_address=self.source_address,
                socket_options=self.socket_options,
            )
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out") from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc


# A request URL -> once it may be sent (the tenant's budget paid, a concurrency slot taken;
# else BudgetWait is raised), what frees its place when it has its answer.
Admit = Callable[[str], Callable[[], None]]
# Told (vendor, method, status or None when no answer came) after every request sent: metrics.
Observer = Callable[[str, str, int | None], None]
READS = frozenset({"GET", "HEAD"})


class HttpClient:
    """requests.Session is not documented as thread-safe, and workers run threads: one each."""

    def __init__(
        self,
        timeout: float,
        user_agent: str = "psa-writeback/0.1",
        vet: Vet | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.timeout = timeout
        self._observer = observer
        self._user_agent = user_agent
        self._vet = vet
        self._local = threading.local()
        self._vendor = "other"
        self._admit: Admit | None = None
        self._before_write: Callable[[], None] | None = None

    def pinned(self, vet: Vet) -> HttpClient:
        """A client (with its own sessions) whose every connection goes through `vet`."""
        return HttpClient(self.timeout, self._user_agent, vet, self._observer)

    def gated(
        self, vendor: str, admit: Admit, before_write: Callable[[], None] | None = None
    ) -> HttpClient:
        """The same client (and connection pools) for one vendor's tenant: every request is
        admitted by `admit` (how the tenant's limits apply without providers knowing about
        them), and `before_write` is called right before any request but a GET or HEAD is sent
        (what it raises aborts that request unsent)."""
        clone = copy.copy(self)
        clone._vendor, clone._admit, clone._before_write = vendor, admit, before_write
        return clone

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = self._user_agent
            if self._vet is not None:
                # A proxy would resolve names itself, out of the guard's sight: go direct.
                session.trust_env = False
                adapter = PinnedAdapter(self._vet)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
            self._local.session = session
        return session

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        release = self._admit(url) if self._admit is not None else None
        # A request whose answer was lost after it was sent may still run at the PSA: its
        # concurrency slot is left to its lease instead of going to a request the PSA refuses.
        still_running = False
        try:
            if self._before_write is not None and method.upper() not in READS:
                self._before_write()  # the last thing before the send; raising aborts it
            try:
                return self._exchange(method, url, **kwargs)
            except requests.RequestException as exc:
                still_running = _was_sent(exc)
                what = (
                    f"timed out after {self.timeout} s"
                    if isinstance(exc, requests.Timeout)
                    else f"failed: {type(exc).__name__}"
                )
                error = failure_class(method, sent=still_running)
                raise error(f"{method} {_path(url)} {what}", failed="site_url") from None
        finally:
            if release is not None and not still_running:
                release()

    def _exchange(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        status: int | None = None
        try:
            # Never follow redirects: a redirect could carry our credentials to another host.
            response = self._session().request(
                method, url, timeout=self.timeout, allow_redirects=False, **kwargs
            )
            status = response.status_code
            return response
        finally:
            if self._observer is not None:
                self._observer(self._vendor, method, status)


def failure_class(method: str, *, sent: bool) -> type[PsaTransientError]:
    """A lost answer to a write that reached the PSA may hide an applied write (ambiguous);
    anything not sent, and any read, is simply worth another try (transient). Only POST is not
    idempotent here: a status PATCH applied twice leaves the same status."""
    return PsaAmbiguousError if sent and method.upper() == "POST" else PsaTransientError


def _was_sent(exc: requests.RequestException) -> bool:
    """False only when the connection was never made (refused, DNS, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return not isinstance(reason, NewConnectionError)


def _path(url: str) -> str:
    """The URL without scheme and host, for error messages (hosts may be tenant-identifying)."""
    return "/" + url.split("://", 1)[-1].split("/", 1)[-1]


def retry_after_seconds(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:  # the HTTP-date form
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def read_answer(
    vendor: str,
    method: str,
    path: str,
    response: requests.Response,
    error_message: Callable[[requests.Response], str],
    *,
    failed: str | None = None,
    blame_auth: Callable[[str], str] = lambda message: "credentials",
) -> Any:
    """The JSON of a 2xx answer, or the domain error for any other, the same for every vendor:
    429, 408, 409 and 5xx are transient (Retry-After kept), 401/403 blame what `blame_auth`
    reads in the message, 404 is not found, redirects and other 4xx are rejected. A 2xx that is
    not JSON is transient too: the retry finds a stored note by its marker instead of guessing."""
    status = response.status_code
    where = f"{vendor} {method} {path} answered {status}"
    if 200 <= status < 300:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise failure_class(method, sent=True)(
                f"{where} with a body that is not JSON", failed=failed
            ) from None
    message = error_message(response)
    if status == 429:
        raise PsaTransientError(
            f"{where} (rate limited): {message}", retry_after_seconds(response), failed=failed
        )
    if status >= 500 or status in (408, 409):  # 409: record in use; worth another try
        error = failure_class(method, sent=status >= 500)  # a 408/409 applied nothing
        raise error(f"{where}: {message}", retry_after_seconds(response), failed=failed)
    if status in (401, 403):
        raise PsaAuthError(f"{where}: {message}", failed=failed or blame_auth(message))
    if status == 404:
        raise PsaNotFound(f"{where}: {message}", failed=failed)
    if 300 <= status < 400:
        raise PsaRejected(f"{where}: redirects are not followed", failed=failed)
    raise PsaRejected(f"{where}: {message}", failed=failed)
