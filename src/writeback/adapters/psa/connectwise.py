"""ConnectWise PSA (Manage) REST API v3.0. Vendor JSON stays in this module.

Facts used here are in shared/reference/connectwise.md: Basic auth `company+public:private`, a
`clientId` header on every call, the codebase discovered from /login/companyinfo, JSON Patch for
the status, note display flags, and the error body shape.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import requests

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
ACCEPT = "application/vnd.connectwise.com+json; version=2025.8"

NOTE_FLAGS: dict[NoteType, dict[str, bool]] = {
    # Customer-visible resolution; an escalation handoff is internal only.
    NoteType.RESOLUTION: {"resolutionFlag": True},
    NoteType.INTERNAL_ANALYSIS: {
        "internalAnalysisFlag": True,
        "detailDescriptionFlag": False,
        "resolutionFlag": False,
    },
}


class CodebaseCache:
    """Codebase per (site, company), shared by every provider built in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._codebases: dict[tuple[str, str], str] = {}

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
    ) -> None:
        self._site = site_url.rstrip("/")
        self._company = company_id
        self._auth = (f"{company_id}+{credentials['public_key']}", credentials["private_key"])
        self._headers = {"clientId": credentials["client_id"], "Accept": ACCEPT}
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
        condition = 'text like "%{}%"'.format(marker.replace("\\", "\\\\").replace('"', '\\"'))
        params = {"conditions": condition, "orderBy": "id desc", "pageSize": 1}
        found = self._call("GET", f"service/tickets/{_id(ticket_id)}/notes", params=params)
        return PostedNote(id=str(found[0]["id"]), ticket_id=ticket_id) if found else None

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
        return [Board(id=b["id"], name=b.get("name", "")) for b in self._all("service/boards")]

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

    def _all(self, path: str) -> list[dict[str, Any]]:
        """Every page of a list, following the `Link: rel="next"` headers on our own host."""
        response = self._request("GET", path, params={"pageSize": PAGE_SIZE})
        items: list[dict[str, Any]] = list(_parse("GET", path, response) or [])
        for _ in range(MAX_PAGES):
            next_url = response.links.get("next", {}).get("url")
            if not next_url:
                return items
            if not next_url.startswith(self._site + "/"):
                raise PsaRejected("ConnectWise paging link points at another host")
            response = self._http.request("GET", next_url, auth=self._auth, headers=self._headers)
            items.extend(_parse("GET", path, response) or [])
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
        if response.status_code == 404:
            raise PsaNotFound(
                f"ConnectWise does not know company {self._company!r} at this site",
                failed="codebase",
            )
        info = _parse("GET", "login/companyinfo", response)
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
