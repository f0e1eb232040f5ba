"""Which status a writeback moves a ticket to. ConnectWise statuses belong to a board, so the
target is chosen for the ticket's own board at run time: a per-board mapping, else the
connection's any-board mapping, else the account-level id of the seed API. Targets are checked
against the board's statuses (fetched and cached) before any note is posted."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cachetools import TTLCache

from writeback.domain.errors import StatusTargetError
from writeback.domain.model import AccountSettings, BoardStatus, JobKind, StatusMapping, Ticket
from writeback.domain.ports import Clock


class StatusCatalog:
    """Board statuses per connection, cached for `ttl` so a burst of jobs reads them once."""

    def __init__(self, clock: Clock, ttl: float = 300.0, size: int = 10_000) -> None:
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe on their own
        self._entries: TTLCache[tuple[int, int | None], list[BoardStatus]] = TTLCache(
            size, ttl, timer=lambda: clock().timestamp()
        )

    def statuses(
        self, connection_id: int, board_id: int | None, fetch: Callable[[], list[BoardStatus]]
    ) -> list[BoardStatus]:
        key = (connection_id, board_id)
        with self._lock:
            cached = self._entries.get(key)
        if cached is not None:
            return cached
        fetched = fetch()
        with self._lock:
            self._entries[key] = fetched
        return fetched


@dataclass(frozen=True)
class Target:
    status_id: int | None
    skipped_reason: str | None = None


def _choose(
    mappings: Sequence[StatusMapping], kind: JobKind, board_id: int | None
) -> StatusMapping | None:
    mine = [m for m in mappings if m.kind == kind]
    exact = [m for m in mine if m.board_id is not None and m.board_id == board_id]
    fallback = [m for m in mine if m.board_id is None]
    chosen = exact or fallback
    return chosen[0] if chosen else None


def resolve_target(
    kind: JobKind,
    read_ticket: Callable[[], Ticket],
    mappings: Sequence[StatusMapping],
    settings: AccountSettings | None,
    board_statuses: Callable[[int | None], list[BoardStatus]],
) -> Target:
    """`read_ticket` is called only when something is configured: an unconfigured account
    costs no PSA call, as in the seed system."""
    default_id = settings.target_status_id(kind) if settings else None
    if default_id is None and not any(m.kind == kind for m in mappings):
        return Target(None, _skipped(kind, "any board"))
    ticket = read_ticket()
    mapping = _choose(mappings, kind, ticket.board_id)
    wanted_id = mapping.status_id if mapping else None
    wanted_name = mapping.status_name if mapping else None
    if mapping is None and settings is not None:
        wanted_id = settings.target_status_id(kind)
    if wanted_id is None and wanted_name is None:
        setting = f"cw_{'resolved' if kind is JobKind.RESOLVE else 'escalated'}_status_id"
        return Target(
            None,
            (
                f"No target status configured for board {ticket.board_id} (no status map entry, "
                f"{setting} not set); the note was posted and the ticket status left unchanged."
            ),
        )
    statuses = board_statuses(ticket.board_id)
    where = f"board {ticket.board_id}" if ticket.board_id is not None else "this PSA"
    if wanted_name is not None:
        found = [s for s in statuses if s.name.strip().lower() == wanted_name.strip().lower()]
        label = f"named {wanted_name!r}"
    else:
        found = [s for s in statuses if s.id == wanted_id]
        label = f"{wanted_id}"
    if not found:
        raise StatusTargetError(
            f"No status {label} on {where}; fix the status map for this board.",
            "status_not_found",
        )
    active = [s for s in found if not s.inactive]
    if not active:
        raise StatusTargetError(f"Status {label} on {where} is inactive.", "status_inactive")
    return Target(active[0].id)


def _skipped(kind: JobKind, where: str) -> str:
    setting = f"cw_{'resolved' if kind is JobKind.RESOLVE else 'escalated'}_status_id"
    return (
        f"No target status configured for {where} (no status map entry, {setting} not set); "
        "the note was posted and the ticket status left unchanged."
    )
