"""HaloPSA REST API. Vendor JSON stays in this module.

Facts used here: the authorisation server and tenant discovered from `GET {site}/api/authinfo`
(`auth_url`, `tenant_id`; the token endpoint is `{auth_url}/token`), falling back to
`{site}/auth/token` (homotechsual/HaloAPI Connect-HaloAPI.ps1; n8n's HaloPSA credentials take a
separate authorisation server URL, here the `auth_url` option); an OAuth2 client-credentials
token (`?tenant=` when known), `Authorization: Bearer` on `{site}/api/...`, notes posted as
"actions" in a JSON array to `/api/Actions` (`hiddenfromuser: true` = internal only), listed with
`includehtmlnote=true` so HTML-only notes are searchable (Get-HaloAction.ps1), the status
upserted with `[{"id", "status_id"}]` to `/api/Tickets`, global statuses from `/api/Status` (with
`excludeclosed`, Get-HaloStatus.ps1; no `inactive` flag, Status.json), and 400s as field-keyed
JSON (`{"[0].ticket_id": "..."}`, n8n GenericFunctions.ts).

Choices where the reference is silent, and how the code stays safe if reality differs:
- The note goes as plain text in `note` and, HTML-escaped with line breaks as `<br>`, in
  `note_html`: Halo displays actions as HTML, and markdown line breaks would otherwise collapse.
  Escaping means no markup from the drafted text is ever interpreted. `sendemail` is false, as
  ConnectWise's processNotifications is: the PSA's own rules decide whom to tell.
- The action `outcome` names are guesses ("Resolution", "Private Note") and constructor
  parameters; `hiddenfromuser`, not the outcome, is what decides visibility.
- Tokens are cached per (site, tenant, client id, secret digest), so a connection with another
  secret never borrows a token; they are refreshed before they expire and once on a 401, and a
  connection check always asks for a fresh one.
- find_note pages through all of a ticket's actions and matches the marker itself; a page larger
  than asked for, or one with nothing new, ends the walk (a server ignoring paging), and a ticket
  with more actions than MAX_PAGES pages is refused rather than risk posting a note twice.
- A status change is checked first: the status must be listed and active, and the ticket must
  exist, since an upsert naming an unknown id might create a ticket.
- `closed` comes from the connection's `closed_status_ids` option when set, else from the status
  list itself: a status that `?excludeclosed=true` leaves out is closed. A server ignoring the
  parameter marks nothing closed (the flag is informational), never a wrong status usable.
- Only listed statuses are usable: Halo lists active ones, so an inactive status is refused.
- The authorisation server named by authinfo must pass the SSRF guard before the client secret
  is sent there; a site without authinfo (older, on-premise) uses `{site}/auth/token`.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from cachetools import TLRUCache, TTLCache
from pydantic import BaseModel, ConfigDict, Field

from writeback.adapters.psa.boardless import ALL_TICKETS, require_no_board
from writeback.adapters.psa.http import HttpClient, read_answer, retry_after_seconds
from writeback.domain.errors import (
    InvalidInput,
    PsaAuthError,
    PsaNotFound,
    PsaRejected,
    PsaTransientError,
)
from writeback.domain.model import Board, BoardStatus, NoteType, PostedNote, Ticket

log = logging.getLogger(__name__)

CREDENTIAL_FIELDS = ("client_id", "client_secret")
TOKEN_MARGIN = 60.0  # seconds before expiry a token is replaced (at most half its lifetime)
STATUS_TTL = 600.0
PAGE_SIZE = 100
MAX_PAGES = 50
MAX_MESSAGE = 500
_DIGITS = re.compile(r"[0-9]+")
_TAG = re.compile(r"<[^>]*>")


@dataclass(frozen=True)
class ActionStyle:
    """How a note of one kind is posted as a Halo action."""

    hidden_from_user: bool
    outcome: str | None  # the action type's name; None sends none


ACTION_STYLES: Mapping[NoteType, ActionStyle] = {
    # Customer-visible resolution; an escalation handoff is internal only.
    NoteType.RESOLUTION: ActionStyle(hidden_from_user=False, outcome="Resolution"),
    NoteType.INTERNAL_ANALYSIS: ActionStyle(hidden_from_user=True, outcome="Private Note"),
}


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: float


@dataclass(frozen=True)
class _Status:
    id: int
    name: str
    closed: bool


class Options(BaseModel):
    """Per-connection settings."""

    model_config = ConfigDict(extra="forbid")

    # The authorisation server (`https://auth.example/auth`; `/token` is appended), for hosted
    # instances where authinfo is missing or wrong. Passes the SSRF guard like the site URL.
    auth_url: str | None = Field(default=None, min_length=1, max_length=500)
    # Which statuses count as closed, when the status list cannot say.
    closed_status_ids: list[int] | None = Field(default=None, max_length=50)


CacheKey = tuple[str, str, str, str]


class HaloCache:
    """Bearer tokens and status lists per (site, tenant, client id, secret digest), shared by
    every provider built in this process. Thread-safe."""

    def __init__(
        self,
        *,
        margin: float = TOKEN_MARGIN,
        status_ttl: float = STATUS_TTL,
        clock: Callable[[], float] = time.monotonic,
        size: int = 10_000,
    ) -> None:
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe on their own
        self._margin = margin
        self._clock = clock
        self._salt = os.urandom(16)  # secret digests mean nothing outside this process
        # Each token lives until its own refresh time.
        self._tokens: TLRUCache[CacheKey, _Token] = TLRUCache(
            size, ttu=lambda _key, token, _now: token.refresh_at, timer=clock
        )
        self._statuses: TTLCache[CacheKey, list[_Status]] = TTLCache(size, status_ttl, timer=clock)

    def key(self, site: str, tenant: str, client_id: str, secret: str) -> CacheKey:
        digest = hmac.new(self._salt, secret.encode(), hashlib.sha256).hexdigest()
        return (site, tenant, client_id, digest)

    def token(self, key: CacheKey) -> str | None:
        with self._lock:
            token = self._tokens.get(key)
        return token.value if token is not None else None

    def put_token(self, key: CacheKey, value: str, expires_in: float) -> None:
        margin = min(self._margin, expires_in / 2)
        with self._lock:
            self._tokens[key] = _Token(value, self._clock() + expires_in - margin)

    def drop_token(self, key: CacheKey, value: str) -> None:
        """Forget `value` unless another thread has already replaced it."""
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and token.value == value:
                del self._tokens[key]

    def statuses(self, key: CacheKey) -> list[_Status] | None:
        with self._lock:
            return self._statuses.get(key)

    def put_statuses(self, key: CacheKey, statuses: list[_Status]) -> None:
        with self._lock:
            self._statuses[key] = statuses


class HaloProvider:
    def __init__(
        self,
        *,
        site_url: str,
        tenant: str,
        credentials: dict[str, str],
        http: HttpClient,
        cache: HaloCache,
        check_url: Callable[[str], str],
        options: Options | None = None,
        action_styles: Mapping[NoteType, ActionStyle] = ACTION_STYLES,
    ) -> None:
        self._site = site_url.rstrip("/")
        self._tenant = tenant.strip()
        self._client_id = credentials["client_id"]
        self._client_secret = credentials["client_secret"]
        self._http = http
        self._cache = cache
        self._key = cache.key(self._site, self._tenant, self._client_id, self._client_secret)
        self._styles = dict(action_styles)
        self._check_url = check_url
        self._options = options or Options()

    # PsaProvider

    def post_note(self, ticket_id: str, text: str, note_type: NoteType) -> PostedNote:
        style = self._styles[note_type]
        action: dict[str, Any] = {
            "ticket_id": _id(ticket_id),
            "note": text,
            "note_html": html.escape(text).replace("\n", "<br>"),
            "hiddenfromuser": style.hidden_from_user,
            "sendemail": False,
        }
        if style.outcome:
            action["outcome"] = style.outcome
        created = self._call("POST", "Actions", json=[action])
        if isinstance(created, list):  # one object for one action, or an array
            created = created[0] if created else None
        action_id = created.get("id") if isinstance(created, dict) else None
        if action_id is None:
            raise PsaTransientError(
                "Halo POST Actions answered without an action id; the note may be stored"
            )
        return PostedNote(id=str(action_id), ticket_id=ticket_id)

    def find_note(self, ticket_id: str, marker: str) -> PostedNote | None:
        number = _id(ticket_id)
        wanted = marker.casefold()
        matches: list[int] = []
        seen: set[Any] = set()
        for page_no in range(1, MAX_PAGES + 1):
            params = {
                "ticket_id": number,
                "includehtmlnote": "true",
                "pageinate": "true",
                "page_size": PAGE_SIZE,
                "page_no": page_no,
            }
            found = self._call("GET", "Actions", params=params)
            actions = found.get("actions") if isinstance(found, dict) else None
            page = [a for a in actions or [] if isinstance(a, dict)]
            fresh = [a for a in page if a.get("id") not in seen]
            seen.update(a.get("id") for a in page)
            matches += [
                a["id"]
                for a in fresh
                if isinstance(a.get("id"), int) and wanted in _action_text(a).casefold()
            ]
            if len(page) != PAGE_SIZE or not fresh:  # the last page, or paging is ignored
                break
        else:
            raise PsaRejected(
                f"Halo ticket {number} has more than {MAX_PAGES * PAGE_SIZE} actions: "
                "not searched for an earlier note"
            )
        return PostedNote(id=str(max(matches)), ticket_id=ticket_id) if matches else None

    def get_ticket(self, ticket_id: str) -> Ticket:
        number = _id(ticket_id)
        raw = self._call("GET", f"Tickets/{number}")
        if not isinstance(raw, dict) or raw.get("id") != number:
            raise PsaNotFound(f"Halo has no ticket {number}")
        status = raw.get("status_id")
        status_id = status if isinstance(status, int) and not isinstance(status, bool) else None
        return Ticket(
            id=str(number),
            status_id=status_id,
            status_name=self._status_name(status_id),
            board_id=None,
            summary=str(raw.get("summary") or ""),
        )

    def update_ticket_status(self, ticket_id: str, status_id: int) -> None:
        number = _id(ticket_id)
        self._usable_status(status_id)
        self.get_ticket(ticket_id)  # an upsert of an unknown id might create a ticket
        updated = self._call("POST", "Tickets", json=[{"id": number, "status_id": status_id}])
        if isinstance(updated, list):
            updated = updated[0] if updated else None
        if isinstance(updated, dict) and updated.get("id") not in (None, number):
            raise PsaRejected(f"Halo answered the status change of {number} with another ticket")

    def list_boards(self) -> list[Board]:
        return [ALL_TICKETS]

    def list_statuses(self, board_id: int | None) -> list[BoardStatus]:
        require_no_board("HaloPSA", board_id)
        return [
            BoardStatus(id=s.id, name=s.name, board_id=None, inactive=False, closed=s.closed)
            for s in self._statuses(refresh=True)
        ]

    def check_connection(self) -> None:
        self._token(refresh=True)  # site reachable, tenant known, client id and secret good
        self._statuses(refresh=True)  # the token works on the API

    # Statuses

    def _statuses(self, refresh: bool = False) -> list[_Status]:
        cached = None if refresh else self._cache.statuses(self._key)
        if cached is not None:
            return cached
        listed = self._status_list({})
        closed = self._options.closed_status_ids
        if closed is None:  # what the server leaves out when asked to exclude closed ones
            still_open = set(self._status_list({"excludeclosed": "true"}))
            closed = [i for i in listed if i not in still_open]
        statuses = [_Status(i, name, i in closed) for i, name in listed.items()]
        self._cache.put_statuses(self._key, statuses)
        return statuses

    def _status_list(self, params: dict[str, str]) -> dict[int, str]:
        raw = self._call("GET", "Status", params=params)
        if isinstance(raw, dict):  # tolerate a wrapped list
            raw = raw.get("statuses") or raw.get("records")
        if not isinstance(raw, list):
            raise PsaRejected("Halo GET Status answered something else than a list")
        return {
            s["id"]: str(s.get("name") or "")
            for s in raw
            if isinstance(s, dict) and isinstance(s.get("id"), int)
        }

    def _status_name(self, status_id: int | None) -> str | None:
        if status_id is None:
            return None
        for refresh in (False, True):  # a status missing from the cache may be new
            for status in self._statuses(refresh):
                if status.id == status_id:
                    return status.name
        return None

    def _usable_status(self, status_id: int) -> None:
        for refresh in (False, True):
            for status in self._statuses(refresh):
                if status.id == status_id:
                    return
        raise PsaRejected(f"Halo lists no active status {status_id}")

    # Plumbing

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        token = self._token()
        response = self._send(method, token, path, **kwargs)
        if response.status_code == 401:
            # Revoked or expired early: one fresh token, one more try (a 401 stored nothing).
            self._cache.drop_token(self._key, token)
            response = self._send(method, self._token(refresh=True), path, **kwargs)
        return _parse(method, path, response)

    def _send(self, method: str, token: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        return self._http.request(method, f"{self._site}/api/{path}", headers=headers, **kwargs)

    def _token(self, refresh: bool = False) -> str:
        cached = None if refresh else self._cache.token(self._key)
        if cached:
            return cached
        token_url, tenant = self._auth_server()
        response = self._http.request(
            "POST",
            token_url,
            params={"tenant": tenant} if tenant else None,
            data={
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
                "scope": "all",
            },
            headers={"Accept": "application/json"},
        )
        issued = _parse_token(response, tenant_given=bool(tenant))
        self._cache.put_token(self._key, issued[0], issued[1])
        return issued[0]

    def _auth_server(self) -> tuple[str, str]:
        """(token URL, tenant): the configured auth URL, else authinfo's, else `{site}/auth`."""
        auth_url, tenant = self._options.auth_url, self._tenant
        if auth_url is None:
            info = _json(self._http.request("GET", f"{self._site}/api/authinfo"))
            found = info.get("auth_url") if isinstance(info, dict) else None
            if isinstance(found, str) and found.strip():
                auth_url = found.strip()
                tenant = tenant or str(info.get("tenant_id") or "").strip()
        if auth_url is None:
            return f"{self._site}/auth/token", tenant
        try:  # the PSA named this host: it must pass the guard before the secret goes there
            auth_url = self._check_url(auth_url.rstrip("/"))
        except InvalidInput as exc:
            message = f"Halo auth server refused: {exc.message}"
            raise PsaRejected(message, failed="auth_url") from None
        return (auth_url if auth_url.endswith("/token") else f"{auth_url}/token"), tenant


def _id(ticket_id: str) -> int:
    """Ticket ids are integers in Halo; refuse anything else before it reaches a URL or body."""
    if not _DIGITS.fullmatch(ticket_id):
        raise PsaRejected(f"Halo ticket id must be an integer, got {ticket_id!r}")
    return int(ticket_id)


def _action_text(action: dict[str, Any]) -> str:
    note = str(action.get("note") or "")
    note_html = str(action.get("note_html") or "")
    return f"{note}\n{html.unescape(_TAG.sub(' ', note_html))}"


def _parse_token(response: requests.Response, *, tenant_given: bool) -> tuple[str, float]:
    """(access token, lifetime in seconds). Failures blame the site URL, the tenant or the
    client credentials; the secret never appears in a message."""
    status = response.status_code
    body = _json(response)
    where = f"Halo token request answered {status}"
    if 200 <= status < 300:
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise PsaRejected(
                f"{where} without an access token: is this a Halo site?", failed="site_url"
            )
        expires_in = body.get("expires_in") if isinstance(body, dict) else None
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 3600.0
        return token, max(lifetime, 0.0)
    message = _error_message(response)
    if status == 429 or status >= 500 or status == 408:
        raise PsaTransientError(
            f"{where}: {message}", retry_after_seconds(response), failed="site_url"
        )
    if 300 <= status < 400:
        raise PsaRejected(f"{where}: redirects are not followed", failed="site_url")
    if status == 404 or not isinstance(body, dict):
        raise PsaNotFound(f"{where}: is this a Halo site?", failed="site_url")
    blamed = "tenant" if tenant_given and "tenant" in message.lower() else "credentials"
    raise PsaAuthError(f"{where}: {message}", failed=blamed)


def _parse(method: str, path: str, response: requests.Response) -> Any:
    return read_answer("Halo", method, path, response, _error_message)


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error_message(response: requests.Response) -> str:
    body = _json(response)
    if isinstance(body, str):
        message = body
    elif isinstance(body, dict):
        keys = ("message", "Message", "error_description", "error", "title")
        message = "; ".join(str(body[k]) for k in keys if isinstance(body.get(k), str))
        # Validation errors are keyed by the field at fault: {"[0].ticket_id": "..."}.
        message = message or "; ".join(
            f"{field}: {text}" for field, text in body.items() if isinstance(text, str)
        )
    elif isinstance(body, list):
        message = "; ".join(str(item) for item in body if isinstance(item, str))
    elif response.headers.get("Content-Type", "").startswith("text/plain"):
        message = response.text.strip()
    else:
        message = ""
    return (message or response.reason or "no error body")[:MAX_MESSAGE]
