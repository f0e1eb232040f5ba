"""ConnectWise PSA (Manage) REST API v3.0. Vendor JSON stays in this module.

Facts used here: Basic auth `company+public:private`, a `clientId` header on every call, the
codebase discovered from /login/companyinfo (200 with a JSON `null` for an unknown company), JSON
Patch for the status, the three note display flags, paging by `page`/`pageSize`, boards'
`inactiveFlag`, and the error body shape. Requests and answers are checked against the vendor's
OpenAPI document (2025.8) in the contract tests.

Where sources are silent the code fails safe:
- Paging continues on our own host with `page`+1 until a short page; a `Link` header (which could
  name another host) is never followed.
- Finding an earlier note by its marker uses a `conditions` search when the server accepts it,
  and pages through the ticket's notes when it answers 400; either way the marker is matched in
  the note text here, so an ignored filter cannot produce a false match.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import urlsplit

import requests
from cachetools import LRUCache
from pydantic import BaseModel, ConfigDict, Field

from writeback.adapters.psa.http import HttpClient, read_answer
from writeback.domain.errors import (
    PsaNotFound,
    PsaRejected,
)
from writeback.domain.model import Board, BoardStatus, NoteType, PostedNote, Ticket

log = logging.getLogger(__name__)

CREDENTIAL_FIELDS = ("public_key", "private_key", "client_id")
PAGE_SIZE = 1000  # ConnectWise's maximum
MAX_PAGES = 100
NOTE_PAGE_SIZE = 100  # paging through a ticket's notes when `conditions` is refused
DEFAULT_ACCEPT_VERSION = "2025.8"  # the API version our requests and parsing are written for
ACCEPT = "application/vnd.connectwise.com+json; version={}"
# The hosts users log into (and paste), mapped to the API host of the same region.
CLOUD_API_HOSTS = {
    "na.myconnectwise.net": "api-na.myconnectwise.net",
    "eu.myconnectwise.net": "api-eu.myconnectwise.net",
    "au.myconnectwise.net": "api-au.myconnectwise.net",
    "aus.myconnectwise.net": "api-aus.myconnectwise.net",
    "za.myconnectwise.net": "api-za.myconnectwise.net",
    "staging.connectwisedev.com": "api-staging.connectwisedev.com",
}

# All three display flags are sent, so no server default decides who sees the note.
NOTE_FLAGS: dict[NoteType, dict[str, bool]] = {
    # Customer-visible resolution; an escalation handoff is internal only.
    NoteType.RESOLUTION: {
        "detailDescriptionFlag": False,
        "internalAnalysisFlag": False,
        "resolutionFlag": True,
    },
    NoteType.INTERNAL_ANALYSIS: {
        "detailDescriptionFlag": False,
        "internalAnalysisFlag": True,
        "resolutionFlag": False,
    },
}


class Options(BaseModel):
    """Per-connection settings."""

    model_config = ConfigDict(extra="forbid")

    # On-premise servers on older releases may not speak the default version.
    accept_version: str = Field(default=DEFAULT_ACCEPT_VERSION, pattern=r"^20[0-9]{2}\.[0-9]{1,2}$")


def api_site_url(site_url: str) -> str:
    """A cloud UI host (`na.myconnectwise.net`) becomes its API host (`api-na...`); the path is
    ours to build, so it is dropped. Other hosts (on-premise, already API hosts) stay."""
    parts = urlsplit(site_url.strip())
    api_host = CLOUD_API_HOSTS.get((parts.hostname or "").lower())
    return f"https://{api_host}" if api_host else site_url


class CodebaseCache:
    """Codebase per (site, company), shared by every provider built in this process."""

    def __init__(self, size: int = 10_000) -> None:
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe on their own
        self._codebases: LRUCache[tuple[str, str], str] = LRUCache(size)

    def get(self, key: tuple[str, str]) -> str | None:
        with self._lock:
            return self._codebases.get(key)

    def put(self, key: tuple[str, str], codebase: str) -> None:
        with self._lock:
            self._codebases[key] = codebase


class ConnectWiseProvider:
    def __init__(
        self,
        *,
        site_url: str,
        company_id: str,
        credentials: dict[str, str],
        http: HttpClient,
        codebases: CodebaseCache,
        process_notifications: bool = False,
        options: Options | None = None,
    ) -> None:
        self._site = site_url.rstrip("/")
        self._company = company_id
        self._auth = (f"{company_id}+{credentials['public_key']}", credentials["private_key"])
        version = (options or Options()).accept_version
        self._headers = {"clientId": credentials["client_id"], "Accept": ACCEPT.format(version)}
        self._http = http
        self._codebases = codebases
        self._process_notifications = process_notifications

    # PsaProvider

    def post_note(self, ticket_id: str, text: str, note_type: NoteType) -> PostedNote:
        body = {"text": text, "processNotifications": self._process_notifications}
        body.update(NOTE_FLAGS[note_type])
        note = self._call("POST", f"service/tickets/{_id(ticket_id)}/notes", json=body)
        return PostedNote(id=str(note["id"]), ticket_id=ticket_id)

    def find_note(self, ticket_id: str, marker: str) -> PostedNote | None:
        path = f"service/tickets/{_id(ticket_id)}/notes"
        condition = 'text like "%{}%"'.format(marker.replace("\\", "\\\\").replace('"', '\\"'))
        params = {"conditions": condition, "orderBy": "id desc", "pageSize": 25}
        response = self._request("GET", path, params=params)
        if response.status_code == 400:  # conditions refused: look through every note instead
            log.info("connectwise refused a conditions search on notes; paging instead")
            return _latest_with(self._all(path, NOTE_PAGE_SIZE), marker, ticket_id)
        answered = _parse("GET", path, response) or []
        found = _latest_with(answered, marker, ticket_id)
        if found is None and answered:
            # Answered, but with notes that do not carry the marker: the filter was ignored.
            return _latest_with(self._all(path, NOTE_PAGE_SIZE), marker, ticket_id)
        return found

    def get_ticket(self, ticket_id: str) -> Ticket:
        raw = self._call("GET", f"service/tickets/{_id(ticket_id)}")
        status = raw.get("status") or {}
        board = raw.get("board") or {}
        return Ticket(
            id=str(raw["id"]),
            status_id=status.get("id"),
            status_name=status.get("name"),
            board_id=board.get("id"),
            summary=raw.get("summary", ""),
        )

    def update_ticket_status(self, ticket_id: str, status_id: int) -> None:
        patch = [{"op": "replace", "path": "status", "value": {"id": status_id}}]
        self._call("PATCH", f"service/tickets/{_id(ticket_id)}", json=patch)

    def list_boards(self) -> list[Board]:
        """Active boards only: no ticket lands on an inactive one."""
        return [
            Board(id=b["id"], name=b.get("name", ""))
            for b in self._all("service/boards")
            if not b.get("inactiveFlag")
        ]

    def list_statuses(self, board_id: int | None) -> list[BoardStatus]:
        if board_id is None:
            raise PsaRejected("ConnectWise statuses belong to a board: give its id")
        return [
            BoardStatus(
                id=s["id"],
                name=s.get("name", ""),
                board_id=board_id,
                inactive=bool(s.get("inactive")),
                closed=bool(s.get("closedStatus")),
                escalation=s.get("escalationStatus"),
            )
            for s in self._all(f"service/boards/{int(board_id)}/statuses")
        ]

    def check_connection(self) -> None:
        self._codebase(refresh=True)  # host reachable, company known, codebase discovered
        self._call("GET", "service/boards", params={"pageSize": 1})  # credentials and clientId

    # Plumbing

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return _parse(method, path, self._request(method, path, **kwargs))

    def _all(self, path: str, page_size: int | None = None) -> list[dict[str, Any]]:
        """Every page of a list: `page`+1 on our own host until a short page. `Link` headers
        are never followed (one could point at another host)."""
        page_size = page_size or PAGE_SIZE
        items: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            params = {"page": page, "pageSize": page_size}
            found = self._call("GET", path, params=params)
            batch = [item for item in found or [] if isinstance(item, dict)]
            items.extend(batch)
            if len(batch) < page_size:
                return items
        raise PsaRejected(f"ConnectWise list {path} has more than {MAX_PAGES} pages")

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        codebase = self._codebase()
        response = self._send(method, codebase, path, **kwargs)
        if response.status_code == 404:
            # A hosted tenant's codebase can move between releases: rediscover once and retry.
            moved = self._codebase(refresh=True)
            if moved != codebase:
                log.info("connectwise codebase moved from %s to %s", codebase, moved)
                response = self._send(method, moved, path, **kwargs)
        return response

    def _send(self, method: str, codebase: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"{self._site}/{codebase}apis/3.0/{path}"
        return self._http.request(method, url, auth=self._auth, headers=self._headers, **kwargs)

    def _codebase(self, refresh: bool = False) -> str:
        key = (self._site, self._company)
        cached = None if refresh else self._codebases.get(key)
        if cached:
            return cached
        response = self._http.request("GET", f"{self._site}/login/companyinfo/{self._company}")
        if response.status_code == 404:  # ConnectWise answers 200 whatever the company
            raise PsaNotFound(
                "login/companyinfo answered 404: is this a ConnectWise site?", failed="site_url"
            )
        info = _parse("GET", "login/companyinfo", response)
        if info is None:  # ConnectWise answers an unknown company with 200 and a JSON null
            raise PsaNotFound(
                f"ConnectWise does not know company {self._company!r} at this site",
                failed="company_id",
            )
        codebase = str(info.get("Codebase") or "") if isinstance(info, dict) else ""
        if not codebase:
            raise PsaRejected("ConnectWise companyinfo carries no Codebase", failed="codebase")
        codebase = codebase if codebase.endswith("/") else codebase + "/"
        self._codebases.put(key, codebase)
        return codebase


def _id(ticket_id: str) -> int:
    """Ticket ids are integers in ConnectWise; refuse anything else before it reaches a URL."""
    try:
        return int(ticket_id)
    except ValueError:
        raise PsaRejected(f"ConnectWise ticket id must be an integer, got {ticket_id!r}") from None


def _latest_with(notes: list[Any], marker: str, ticket_id: str) -> PostedNote | None:
    """The newest note whose text carries `marker`, matched here whatever the server filtered."""
    ids = [
        n["id"]
        for n in notes
        if isinstance(n, dict) and isinstance(n.get("id"), int) and marker in str(n.get("text"))
    ]
    return PostedNote(id=str(max(ids)), ticket_id=ticket_id) if ids else None


def _parse(method: str, path: str, response: requests.Response) -> Any:
    return read_answer(
        "ConnectWise",
        method,
        path,
        response,
        _error_message,
        blame_auth=lambda message: "client_id" if "clientid" in message.lower() else "credentials",
    )


def _error_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason or "no error body"
    if not isinstance(body, dict):
        return "unexpected error body"
    details = [e.get("message", "") for e in body.get("errors") or [] if isinstance(e, dict)]
    return "; ".join(filter(None, [body.get("message", ""), *details])) or str(body.get("code"))
