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


@dataclass(frozen=True)
class _Wanted:
    """The status asked for: by id, or by name (case and surrounding spaces ignored)."""

    status_id: int | None
    name: str | None = None

    def matches(self, status: BoardStatus) -> bool:
        if self.name is not None:
            return status.name.strip().lower() == self.name.strip().lower()
        return status.id == self.status_id

    def __str__(self) -> str:
        return f"named {self.name!r}" if self.name is not None else str(self.status_id)


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
        return _skipped(kind, "any board")
    ticket = read_ticket()
    wanted = _wanted(mappings, kind, ticket.board_id, default_id)
    if wanted is None:
        return _skipped(kind, f"board {ticket.board_id}")
    return Target(_active_status(wanted, board_statuses(ticket.board_id), ticket.board_id))


def _wanted(
    mappings: Sequence[StatusMapping], kind: JobKind, board_id: int | None, default_id: int | None
) -> _Wanted | None:
    """The board's own entry, else the any-board entry, else the account's fallback."""
    mapping = _choose(mappings, kind, board_id)
    if mapping is not None:
        return _Wanted(mapping.status_id, mapping.status_name)
    return _Wanted(default_id) if default_id is not None else None


def _active_status(wanted: _Wanted, statuses: list[BoardStatus], board_id: int | None) -> int:
    """The id of the wanted status on the board; refused if the board lacks it or retired it."""
    where = f"board {board_id}" if board_id is not None else "this PSA"
    found = [s for s in statuses if wanted.matches(s)]
    if not found:
        raise StatusTargetError(
            f"No status {wanted} on {where}; fix the status map for this board.",
            "status_not_found",
        )
    active = [s for s in found if not s.inactive]
    if not active:
        raise StatusTargetError(f"Status {wanted} on {where} is inactive.", "status_inactive")
    return active[0].id


def _skipped(kind: JobKind, where: str) -> Target:
    setting = AccountSettings.target_setting(kind)
    return Target(
        None,
        f"No target status configured for {where} (no status map entry, {setting} not set); "
        "the note was posted and the ticket status left unchanged.",
    )
