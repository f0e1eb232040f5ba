"""In-memory fakes of the domain's ports besides the database (`tests.fake_db`), for unit tests and
the lifecycle simulator. They record state instead of being patched in; the provider contract
suite runs against FakePsaProvider too, so it cannot drift from the real providers."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from writeback.domain.errors import (
    PsaAmbiguousError,
    PsaAuthError,
    PsaNotFound,
    PsaRejected,
)
from writeback.domain.model import (
    Board,
    BoardStatus,
    NoteType,
    PostedNote,
    PsaConnection,
    Step,
    Ticket,
)


@dataclass
class FakeNote:
    id: str
    text: str
    note_type: NoteType


class FakePsaProvider:
    """An in-memory PSA tenant with the faults that matter to the pipeline."""

    def __init__(self) -> None:
        self.tickets: dict[str, Ticket] = {}
        self.notes: dict[str, list[FakeNote]] = defaultdict(list)
        self.calls: list[tuple[str, str]] = []
        # The same seed boards as the ConnectWise simulator.
        self.boards = {1: "Help Desk", 21: "Projects"}
        self.statuses: dict[int, list[BoardStatus]] = {
            1: [
                BoardStatus(1, "New", 1),
                BoardStatus(2, "In Progress", 1),
                BoardStatus(42, "Resolved", 1, closed=True, escalation="Resolved"),
                BoardStatus(43, "Escalated", 1, escalation="Responded"),
                BoardStatus(44, "Waiting on Customer", 1),
                BoardStatus(5, "Old Closed", 1, inactive=True, closed=True),
            ],
            21: [
                BoardStatus(17, "New", 21),
                BoardStatus(18, "Complete", 21, closed=True),
                BoardStatus(19, "Escalated", 21),
            ],
        }
        self.credentials_ok = True
        self.ignore_status_changes = 0  # accepted but not applied, this many times
        self.fail_next: dict[str, list[Exception]] = defaultdict(list)  # method -> errors
        self.drop_after_post = 0  # the note is stored, then the connection "drops"
        self._note_ids = itertools.count(900)

    def add_ticket(self, ticket_id: str, status_id: int = 1, board_id: int = 1) -> None:
        name = self._status(board_id, status_id).name
        self.tickets[ticket_id] = Ticket(ticket_id, status_id, name, board_id)

    def _status(self, board_id: int, status_id: int) -> BoardStatus:
        found = [s for s in self.statuses[board_id] if s.id == status_id and not s.inactive]
        if not found:
            raise PsaRejected(f"Service Status {status_id} not found for Service Board {board_id}")
        return found[0]

    def _enter(self, method: str, ticket_id: str) -> Ticket:
        self.calls.append((method, ticket_id))
        if self.fail_next[method]:
            raise self.fail_next[method].pop(0)
        if ticket_id not in self.tickets:
            raise PsaNotFound(f"Ticket {ticket_id} not found")
        return self.tickets[ticket_id]

    def post_note(self, ticket_id: str, text: str, note_type: NoteType) -> PostedNote:
        self._enter("post_note", ticket_id)
        note = FakeNote(str(next(self._note_ids)), text, note_type)
        self.notes[ticket_id].append(note)
        if self.drop_after_post:
            self.drop_after_post -= 1
            raise PsaAmbiguousError("POST notes failed: ConnectionError")
        return PostedNote(note.id, ticket_id)

    def find_note(self, ticket_id: str, marker: str) -> PostedNote | None:
        self._enter("find_note", ticket_id)
        found = [n for n in self.notes[ticket_id] if marker.lower() in n.text.lower()]
        return PostedNote(found[-1].id, ticket_id) if found else None

    def get_ticket(self, ticket_id: str) -> Ticket:
        return self._enter("get_ticket", ticket_id)

    def update_ticket_status(self, ticket_id: str, status_id: int) -> None:
        ticket = self._enter("update_ticket_status", ticket_id)
        status = self._status(ticket.board_id or 1, status_id)
        if self.ignore_status_changes:
            self.ignore_status_changes -= 1
            return
        self.tickets[ticket_id] = replace(ticket, status_id=status_id, status_name=status.name)

    def list_boards(self) -> list[Board]:
        self.calls.append(("list_boards", ""))
        return [Board(board_id, name) for board_id, name in self.boards.items()]

    def list_statuses(self, board_id: int | None) -> list[BoardStatus]:
        self.calls.append(("list_statuses", str(board_id)))
        if board_id not in self.statuses:
            raise PsaNotFound(f"Board {board_id} not found")
        return list(self.statuses[board_id])

    def check_connection(self) -> None:
        if not self.credentials_ok:
            raise PsaAuthError("401 bad credentials", failed="credentials")

    def count(self, method: str) -> int:
        return sum(1 for m, _ in self.calls if m == method)


class FencedProvider:
    """What the HTTP client does with `before_write`, for the in-memory provider: called right
    before each write, and what it raises aborts the write."""

    def __init__(self, provider: FakePsaProvider, before_write: Callable[[], None]) -> None:
        self._provider, self._before_write = provider, before_write

    def post_note(self, ticket_id: str, text: str, note_type: NoteType) -> PostedNote:
        self._before_write()
        return self._provider.post_note(ticket_id, text, note_type)

    def update_ticket_status(self, ticket_id: str, status_id: int) -> None:
        self._before_write()
        self._provider.update_ticket_status(ticket_id, status_id)

    def __getattr__(self, name: str) -> Any:  # reads go straight through
        return getattr(self._provider, name)


class FakeRegistry:
    def __init__(self, provider: FakePsaProvider) -> None:
        self.provider = provider
        self.fences = 0  # providers built with a fence

    def credential_fields(self, provider: str) -> tuple[str, ...] | None:
        return ("public_key", "private_key", "client_id") if provider == "connectwise" else None

    def configure(
        self, provider: str, site_url: str, options: Mapping[str, Any] | None
    ) -> tuple[str, dict[str, Any] | None]:
        return site_url, dict(options) if options else None

    def build(
        self,
        connection: PsaConnection,
        requests: int = 1,
        *,
        before_write: Callable[[], None] | None = None,
    ) -> FakePsaProvider | FencedProvider:
        if before_write is None:
            return self.provider
        self.fences += 1
        return FencedProvider(self.provider, before_write)


class FakeQueue:
    """Records what was sent; `broken` refuses sends; `epoch` changes when the broker 'loses'
    its messages (as a Redis restart does)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Step, str]] = []
        self.broken = False
        self.epoch = 1
        self._ids = itertools.count(1)

    @property
    def enqueued(self) -> list[tuple[str, Step]]:
        return [(job_id, step) for job_id, step, _ in self.sent]

    def new_message_id(self) -> str:
        return f"{self.epoch}.m{next(self._ids)}"

    def enqueue(self, job_id: str, step: Step, message_id: str) -> None:
        if self.broken:
            raise ConnectionError("broker down")
        self.sent.append((job_id, step, message_id))

    def lost(self, message_id: str) -> bool:
        return message_id.split(".", 1)[0] != str(self.epoch)


class FakeSealer:
    """Reversible but not plain text, so a test can tell sealed from unsealed."""

    def seal(self, credentials: dict[str, str]) -> bytes:
        return json.dumps(credentials).encode()[::-1]

    def open(self, sealed: bytes) -> dict[str, str]:
        opened: dict[str, str] = json.loads(sealed[::-1])
        return opened
