"""Autotask PSA REST API v1.0. Vendor JSON stays in this module.

Facts used here (Autotask's REST documentation, django-autotask): the zone discovered from
`/atservicesrest/v1.0/ZoneInformation?user=`, the `ApiIntegrationCode`/`UserName`/`Secret` headers
on every zone call, notes with per-tenant integer picklists `noteType` and `publish` (read from
`.../entityInformation/fields` and chosen by label), the status changed by `PATCH /V1.0/Tickets`,
and error bodies `{"errors": ["..."]}`.

Autotask's thread limit (its "API thread limiting" page): at most 3 requests in flight per object
endpoint and API tracking identifier (our integration code) in one Autotask instance; a fourth is
refused with a 429. ZoneInformation is not counted. Declared here as THREAD_LIMIT, kept by the
registry for all our processes together.

Confirmed in KerkhoffTechnologies/django-autotask (djautotask/api_rest.py): zone discovery answers
500 for a blank or unknown user, and the REST API answers 500 (not 403) for some permission
refusals ("does not have the adequate permissions"). Both are answers, not outages: permanent.

Where the reference is silent the code assumes little and fails safe:
- A 500 is a refusal only when its `{"errors": [...]}` text reads as one (permissions,
  validation); any other 500 stays transient, so an unknown wording costs retries, never a
  wrongly failed job.
- The `publish` and `noteType` labels are per-connection options whose defaults match live
  tenants ("All Autotask Users" for resolutions, "Internal Project Team" then "Internal Only" for
  handoffs); a label or id the tenant lacks refuses the post before anything is posted.
- Zone discovery sends no credentials, and the zone URL it returns must pass the SSRF guard before
  any credential is sent there. A zone that answers 401/404 is rediscovered once (tenants move).
- Picklist values are matched by label, never by a hard-coded number, among active values only;
  a tenant without the label is refused before anything is posted, naming the label.
- A status is checked against the status picklist before the PATCH, so an unknown or inactive one
  is refused here whatever the real service would answer (a 500 would look transient).
- A 2xx answer that cannot be read is transient: the note may be stored, and a retry finds it by
  its marker instead of posting it twice.
- Autotask has no boards: statuses are global and `closed` means the system status Complete (5).
- The thread limit's "object endpoint" is read as the entity after the API version in the URL,
  so a child collection (`Tickets/{id}/Notes`) counts against its parent (`Tickets`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from cachetools import LRUCache, TTLCache
from pydantic import BaseModel, ConfigDict, Field

from writeback.adapters.psa.boardless import ALL_TICKETS, require_no_board
from writeback.adapters.psa.http import HttpClient, read_answer
from writeback.adapters.psa.slots import ConcurrencyLimit
from writeback.domain.errors import (
    InvalidInput,
    PsaNotFound,
    PsaRejected,
    PsaTransientError,
)
from writeback.domain.model import (
    NOTE_TYPE_BY_KIND,
    Board,
    BoardStatus,
    JobKind,
    NoteType,
    PostedNote,
    Ticket,
)

log = logging.getLogger(__name__)

CREDENTIAL_FIELDS = ("username", "secret", "integration_code")
DISCOVERY_PATH = "/atservicesrest/v1.0/ZoneInformation"
API_VERSION = "V1.0"
CLOSED_STATUSES = frozenset({5})  # "Complete", Autotask's system closed status
PICKLIST_TTL = 600.0  # seconds; admins can add statuses and note types at any time
MAX_MESSAGE = 500
# The picklists this module reads, per entity.
_PICKLIST_FIELDS = {"Tickets": ("status",), "TicketNotes": ("noteType", "publish")}
_FAILED_BY_FIELD = {"noteType": "note_type", "publish": "publish"}
_DIGITS = re.compile(r"[0-9]+")
# What a 500's error text says when the request was refused rather than the service failing.
_REFUSAL = re.compile(
    r"adequate permission|not have permission|permission denied|not authori[sz]ed|is required"
    r"|is invalid|invalid value|not valid|does not exist|must be|is not allowed|validation",
    re.IGNORECASE,
)


def thread_endpoint(url: str) -> str | None:
    """The object endpoint a request counts against in Autotask's thread limit: the entity after
    the API version (any case, as Autotask matches paths); None for ZoneInformation."""
    _, _, rest = urlsplit(url).path.lower().partition("/v1.0/")
    entity = rest.split("/", 1)[0]
    return None if entity in ("", "zoneinformation") else entity


THREAD_LIMIT = ConcurrencyLimit(3, thread_endpoint, per_credential="integration_code")


@dataclass(frozen=True)
class NoteStyle:
    """How a note of one kind is posted: picklist labels (the first active match wins) and the
    title (some ticket categories require one)."""

    note_type: tuple[str | int, ...]  # labels (any case) or picklist ids
    publish: tuple[str | int, ...]
    title: str


NOTE_STYLES: Mapping[NoteType, NoteStyle] = {
    # Customer-visible resolution; an escalation handoff is for internal users only (live
    # tenants label publish "All Autotask Users", "Internal Project Team", "Internal &
    # Co-Managed"; the last one shows co-managing customers the note, so it is never a default).
    NoteType.RESOLUTION: NoteStyle(("Resolution",), ("All Autotask Users",), "Resolution"),
    NoteType.INTERNAL_ANALYSIS: NoteStyle(
        ("Internal Notes", "Task Detail"),
        ("Internal Project Team", "Internal Only"),
        "Escalation handoff",
    ),
}


class Options(BaseModel):
    """Per-connection picklist choices by kind of writeback (resolve, escalate): labels or ids,
    the first active one wins. Kinds left out keep NOTE_STYLES."""

    model_config = ConfigDict(extra="forbid")

    publish: dict[JobKind, list[str | int]] = Field(default_factory=dict)
    note_type: dict[JobKind, list[str | int]] = Field(default_factory=dict)

    def note_styles(self) -> dict[NoteType, NoteStyle]:
        styles = dict(NOTE_STYLES)
        for kind, note in NOTE_TYPE_BY_KIND.items():
            base = styles[note]
            styles[note] = NoteStyle(
                tuple(self.note_type.get(kind) or base.note_type),
                tuple(self.publish.get(kind) or base.publish),
                base.title,
            )
        return styles


@dataclass(frozen=True)
class Choice:
    """One picklist value."""

    value: int
    label: str
    active: bool


Picklists = dict[str, list[Choice]]


class AutotaskCache:
    """Zone URLs and picklists per (site, API user), shared by every provider built in this
    process. Zones are kept until a zone refuses us; picklists for `picklist_ttl` seconds."""

    def __init__(
        self,
        picklist_ttl: float = PICKLIST_TTL,
        clock: Callable[[], float] = time.monotonic,
        size: int = 10_000,
    ) -> None:
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe on their own
        self._zones: LRUCache[tuple[str, str], str] = LRUCache(size)
        self._picklists: TTLCache[tuple[str, str, str], Picklists] = TTLCache(
            size, picklist_ttl, timer=clock
        )

    def zone(self, key: tuple[str, str]) -> str | None:
        with self._lock:
            return self._zones.get(key)

    def put_zone(self, key: tuple[str, str], url: str) -> None:
        with self._lock:
            self._zones[key] = url

    def picklists(self, key: tuple[str, str], entity: str) -> Picklists | None:
        with self._lock:
            return self._picklists.get((*key, entity))

    def put_picklists(self, key: tuple[str, str], entity: str, picklists: Picklists) -> None:
        with self._lock:
            self._picklists[(*key, entity)] = picklists


class AutotaskProvider:
    def __init__(
        self,
        *,
        site_url: str,
        credentials: dict[str, str],
        http: HttpClient,
        cache: AutotaskCache,
        check_url: Callable[[str], str],
        note_styles: Mapping[NoteType, NoteStyle] = NOTE_STYLES,
        closed_statuses: frozenset[int] = CLOSED_STATUSES,
    ) -> None:
        self._site = site_url.rstrip("/")
        self._username = credentials["username"]
        self._key = (self._site, self._username.casefold())
        self._headers = {
            "ApiIntegrationCode": credentials["integration_code"],
            "UserName": self._username,
            "Secret": credentials["secret"],
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self._http = http
        self._cache = cache
        self._check_url = check_url
        self._styles = dict(note_styles)
        self._closed = closed_statuses

    # PsaProvider

    def post_note(self, ticket_id: str, text: str, note_type: NoteType) -> PostedNote:
        style = self._styles[note_type]
        body = {
            "noteType": self._choice("TicketNotes", "noteType", style.note_type),
            "publish": self._choice("TicketNotes", "publish", style.publish),
            "title": style.title,
            "description": text,
        }
        path = f"Tickets/{_id(ticket_id)}/Notes"
        created = self._call("POST", path, json=body)
        item_id = created.get("itemId") if isinstance(created, dict) else None
        if item_id is None:
            raise PsaTransientError(
                f"Autotask POST {path} answered without an itemId; the note may be stored"
            )
        return PostedNote(id=str(item_id), ticket_id=ticket_id)

    def find_note(self, ticket_id: str, marker: str) -> PostedNote | None:
        number = _id(ticket_id)
        query = {
            "filter": [
                {
                    "op": "and",
                    "items": [
                        {"op": "eq", "field": "ticketID", "value": number},
                        {"op": "contains", "field": "description", "value": marker},
                    ],
                }
            ]
        }
        found = self._call("POST", "TicketNotes/query", json=query)
        items = found.get("items") if isinstance(found, dict) else None
        wanted = marker.casefold()
        ids = [
            note["id"]
            for note in items or []
            if isinstance(note, dict)
            and isinstance(note.get("id"), int)
            and str(note.get("ticketID")) == str(number)
            and wanted in str(note.get("description") or "").casefold()
        ]
        return PostedNote(id=str(max(ids)), ticket_id=ticket_id) if ids else None

    def get_ticket(self, ticket_id: str) -> Ticket:
        number = _id(ticket_id)
        found = self._call("GET", f"Tickets/{number}")
        item = found.get("item") if isinstance(found, dict) else None
        if not isinstance(item, dict):
            raise PsaNotFound(f"Autotask has no ticket {number}")
        status = item.get("status")
        status_id = status if isinstance(status, int) and not isinstance(status, bool) else None
        return Ticket(
            id=str(item.get("id", number)),
            status_id=status_id,
            status_name=self._status_name(status_id),
            board_id=None,
            summary=str(item.get("title") or ""),
        )

    def update_ticket_status(self, ticket_id: str, status_id: int) -> None:
        number = _id(ticket_id)
        self._usable_status(status_id)
        self._call("PATCH", "Tickets", json={"id": number, "status": status_id})

    def list_boards(self) -> list[Board]:
        return [ALL_TICKETS]

    def list_statuses(self, board_id: int | None) -> list[BoardStatus]:
        require_no_board("Autotask", board_id)
        return [
            BoardStatus(
                id=choice.value,
                name=choice.label,
                board_id=None,
                inactive=not choice.active,
                closed=choice.value in self._closed,
            )
            for choice in self._picklists("Tickets", refresh=True).get("status", [])
        ]

    def check_connection(self) -> None:
        self._zone(refresh=True)  # site reachable, API user known, zone URL allowed
        self._picklists("TicketNotes", refresh=True)  # credentials and integration code
        for style in self._styles.values():  # the tenant has the note picklist labels we use
            self._choice("TicketNotes", "noteType", style.note_type)
            self._choice("TicketNotes", "publish", style.publish)

    # Picklists

    def _choice(self, entity: str, field: str, labels: Sequence[str | int]) -> int:
        """The value of the first active picklist entry with one of `labels` (any case) or ids."""
        wanted = [label.casefold() if isinstance(label, str) else label for label in labels]
        for refresh in (False, True):  # a label missing from the cache may be new: look again
            active: dict[str | int, int] = {}
            for c in self._picklists(entity, refresh).get(field, []):
                if c.active:
                    active[c.label.strip().casefold()] = active[c.value] = c.value
            for label in wanted:
                if label in active:
                    return active[label]
        names = " or ".join(repr(label) for label in labels)
        raise PsaRejected(
            f"Autotask has no active {entity} {field} picklist value labelled {names}",
            failed=_FAILED_BY_FIELD.get(field),
        )

    def _status_name(self, status_id: int | None) -> str | None:
        if status_id is None:
            return None
        for refresh in (False, True):
            for choice in self._picklists("Tickets", refresh).get("status", []):
                if choice.value == status_id:
                    return choice.label
        return None

    def _usable_status(self, status_id: int) -> None:
        for refresh in (False, True):
            for choice in self._picklists("Tickets", refresh).get("status", []):
                if choice.value == status_id and choice.active:
                    return
        raise PsaRejected(f"Autotask has no active ticket status {status_id}")

    def _picklists(self, entity: str, refresh: bool = False) -> Picklists:
        cached = None if refresh else self._cache.picklists(self._key, entity)
        if cached is not None:
            return cached
        info = self._call("GET", f"{entity}/entityInformation/fields")
        fields = info.get("fields") if isinstance(info, dict) else None
        if not isinstance(fields, list):
            raise PsaRejected(f"Autotask {entity} field information carries no fields")
        wanted = {name.casefold(): name for name in _PICKLIST_FIELDS[entity]}
        picklists: Picklists = {}
        for field in fields:
            if not isinstance(field, dict):
                continue
            name = wanted.get(str(field.get("name", "")).casefold())
            if name is not None:
                picklists[name] = _choices(field.get("picklistValues"))
        self._cache.put_picklists(self._key, entity, picklists)
        return picklists

    # Plumbing

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return _parse(method, path, self._request(method, path, **kwargs))

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        zone = self._zone()
        response = self._send(method, zone, path, **kwargs)
        if response.status_code in (401, 404):
            # The API user's database can move to another zone: rediscover once and retry.
            moved = self._zone(refresh=True)
            if moved != zone:
                log.info("autotask zone of an API user moved; retrying %s %s", method, path)
                response = self._send(method, moved, path, **kwargs)
        return response

    def _send(self, method: str, zone: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"{zone}/{API_VERSION}/{path}"
        try:
            return self._http.request(method, url, headers=self._headers, **kwargs)
        except PsaTransientError as exc:  # the site answered discovery; its zone did not
            raise PsaTransientError(exc.message, exc.retry_after, failed="zone") from None

    def _zone(self, refresh: bool = False) -> str:
        cached = None if refresh else self._cache.zone(self._key)
        if cached:
            return cached
        # Discovery needs no credentials, so none are sent to it.
        response = self._http.request(
            "GET",
            f"{self._site}{DISCOVERY_PATH}",
            params={"user": self._username},
            headers={"Accept": "application/json"},
        )
        info = _parse_discovery(response)
        raw = info.get("url") if isinstance(info, dict) else None
        if not isinstance(raw, str) or not raw.strip():
            raise PsaNotFound("Autotask knows no zone for this API user", failed="zone")
        try:
            zone = self._check_url(raw.strip()).rstrip("/")
        except InvalidInput as exc:
            raise PsaRejected(f"Autotask zone URL refused: {exc.message}", failed="zone") from None
        self._cache.put_zone(self._key, zone)
        return zone


def _id(ticket_id: str) -> int:
    """Ticket ids are integers in Autotask; refuse anything else before it reaches a URL."""
    if not _DIGITS.fullmatch(ticket_id):
        raise PsaRejected(f"Autotask ticket id must be an integer, got {ticket_id!r}")
    return int(ticket_id)


def _choices(raw: Any) -> list[Choice]:
    choices = []
    for entry in raw if isinstance(raw, list) else []:
        if not isinstance(entry, dict):
            continue
        raw_value = entry.get("value")  # a string in the fields answers
        if isinstance(raw_value, bool) or not isinstance(raw_value, int | str):
            continue
        try:
            value = int(raw_value)
        except ValueError:
            continue
        choices.append(Choice(value, str(entry.get("label") or ""), entry.get("isActive") is True))
    return choices


def _parse_discovery(response: requests.Response) -> Any:
    """Discovery errors blame the zone, or the site URL when the answer is not Autotask's."""
    status = response.status_code
    body = _json(response)
    if 300 <= status < 400:
        raise PsaRejected(
            f"Autotask zone discovery answered {status}: redirects are not followed",
            failed="site_url",
        )
    if 200 <= status < 300 and not isinstance(body, dict):
        raise PsaRejected(
            "Autotask zone discovery answered something else than zone information",
            failed="site_url",
        )
    if status in (400, 404) and not isinstance(body, dict):
        raise PsaNotFound(
            f"Autotask zone discovery answered {status}: is this an Autotask site?",
            failed="site_url",
        )
    if status == 500 and isinstance(body, dict) and body.get("errors"):
        # Autotask's answer for a blank or unknown API user: not an outage.
        raise PsaNotFound(
            f"Autotask does not know this API user: {_error_message(response)}",
            failed="username",
        )
    return _parse("GET", "ZoneInformation", response, failed="zone")


def _parse(method: str, path: str, response: requests.Response, failed: str | None = None) -> Any:
    if response.status_code == 500 and _REFUSAL.search(_error_message(response)):
        # Permission refusals and some validation failures come as 500: repeating fails again.
        message = _error_message(response)
        raise PsaRejected(f"Autotask {method} {path} refused: {message}", failed=failed)
    return read_answer(
        "Autotask", method, path, response, _error_message, failed=failed, blame_auth=_blame_auth
    )


def _blame_auth(message: str) -> str:
    squashed = message.lower().replace(" ", "")
    return "integration_code" if "integrationcode" in squashed else "credentials"


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error_message(response: requests.Response) -> str:
    body = _json(response)
    if isinstance(body, dict):
        errors = body.get("errors")
        parts = [
            e if isinstance(e, str) else str(e.get("message", ""))
            for e in (errors if isinstance(errors, list) else [])
            if isinstance(e, str | dict)
        ]
        parts.append(str(body.get("message") or body.get("Message") or ""))
        message = "; ".join(filter(None, parts))
    elif isinstance(body, str):
        message = body
    else:
        message = ""
    return (message or response.reason or "no error body")[:MAX_MESSAGE]
