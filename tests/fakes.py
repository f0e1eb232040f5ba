"""In-memory fakes of the domain's ports, for unit tests. They record state instead of being
patched in; the provider contract suite runs against FakePsaProvider too, so it cannot drift
from the real providers."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from writeback.domain.errors import (
    JobInFlight,
    PsaAuthError,
    PsaNotFound,
    PsaRejected,
    PsaTransientError,
)
from writeback.domain.model import (
    IN_FLIGHT_STATES,
    Account,
    AccountSettings,
    AiSession,
    ApiToken,
    Board,
    BoardStatus,
    Draft,
    JobCursor,
    JobEvent,
    JobFilter,
    JobState,
    NoteType,
    PostedNote,
    PsaConnection,
    StatusMapping,
    Step,
    Ticket,
    User,
    WritebackJob,
)

_ids = itertools.count(1)


@dataclass
class Store:
    accounts: dict[int, Account] = field(default_factory=dict)
    users: dict[int, User] = field(default_factory=dict)
    tokens: dict[str, ApiToken] = field(default_factory=dict)
    settings: dict[int, AccountSettings] = field(default_factory=dict)
    connections: dict[int, PsaConnection] = field(default_factory=dict)
    sessions: dict[int, AiSession] = field(default_factory=dict)
    jobs: dict[str, WritebackJob] = field(default_factory=dict)
    events: list[JobEvent] = field(default_factory=list)
    drafts: dict[str, Draft] = field(default_factory=dict)
    status_maps: dict[int, list[StatusMapping]] = field(default_factory=dict)
    commits: int = 0


def _owned(obj: Any, account_id: int | None) -> Any:
    if obj is None or (account_id is not None and obj.account_id != account_id):
        return None
    return obj


class FakeAccounts:
    def __init__(self, store: Store) -> None:
        self.s = store

    def add_account(self, account: Account) -> None:
        account.id = next(_ids)
        self.s.accounts[account.id] = account

    def get_account(self, account_id: int) -> Account | None:
        return self.s.accounts.get(account_id)

    def add_user(self, user: User) -> None:
        user.id = next(_ids)
        self.s.users[user.id] = user

    def add_token(self, token: ApiToken) -> None:
        self.s.tokens[token.token_hash] = token

    def token_by_hash(self, token_hash: str) -> ApiToken | None:
        return self.s.tokens.get(token_hash)

    def settings(self, account_id: int) -> AccountSettings | None:
        return self.s.settings.get(account_id)

    def add_settings(self, settings: AccountSettings) -> None:
        self.s.settings[settings.account_id] = settings


class FakeConnections:
    def __init__(self, store: Store) -> None:
        self.s = store

    def add(self, connection: PsaConnection) -> None:
        connection.id = next(_ids)
        self.s.connections[connection.id] = connection

    def get(self, connection_id: int, account_id: int | None = None) -> PsaConnection | None:
        return _owned(self.s.connections.get(connection_id), account_id)

    def status_map(self, connection_id: int) -> list[StatusMapping]:
        return list(self.s.status_maps.get(connection_id, []))

    def replace_status_map(self, connection_id: int, mappings: Sequence[StatusMapping]) -> None:
        self.s.status_maps[connection_id] = list(mappings)


class FakeSessions:
    def __init__(self, store: Store) -> None:
        self.s = store

    def add(self, session: AiSession) -> None:
        session.id = next(_ids)
        self.s.sessions[session.id] = session

    def get(self, session_id: int, account_id: int | None = None) -> AiSession | None:
        return _owned(self.s.sessions.get(session_id), account_id)


class FakeJobs:
    def __init__(self, store: Store) -> None:
        self.s = store

    def add(self, job: WritebackJob) -> None:
        running = self.in_flight_for_session(job.session_id)
        if running is not None:  # what the partial unique index does
            raise JobInFlight(running.id)
        self.s.jobs[job.id] = job

    def get(self, job_id: str, account_id: int | None = None) -> WritebackJob | None:
        return _owned(self.s.jobs.get(job_id), account_id)

    def in_flight_for_session(self, session_id: int) -> WritebackJob | None:
        return next(
            (
                j
                for j in self.s.jobs.values()
                if j.session_id == session_id and j.state in IN_FLIGHT_STATES
            ),
            None,
        )

    def claim(
        self, job_id: str, step: Step, delivery_id: str, now: datetime, lease_until: datetime
    ) -> bool:
        job = self.s.jobs.get(job_id)
        if job is None or job.step != step or job.state not in IN_FLIGHT_STATES:
            return False
        if job.delivery_id not in (None, delivery_id) and not (job.due_at and job.due_at <= now):
            return False
        job.state, job.attempts, job.delivery_id = JobState.RUNNING, job.attempts + 1, delivery_id
        job.due_at, job.updated_at = lease_until, now
        return True

    def due(self, now: datetime, limit: int) -> list[WritebackJob]:
        due = [
            j
            for j in self.s.jobs.values()
            if j.state in IN_FLIGHT_STATES and j.due_at is not None and j.due_at <= now
        ]
        return sorted(due, key=lambda j: j.due_at or now)[:limit]

    def mark_redelivered(self, job_id: str, now: datetime, due_at: datetime) -> bool:
        job = self.s.jobs[job_id]
        if job.state not in IN_FLIGHT_STATES or job.due_at is None or job.due_at > now:
            return False
        job.delivery_id, job.due_at, job.redeliveries = None, due_at, job.redeliveries + 1
        return True

    def fail_lost(self, job_id: str, now: datetime, message: str) -> bool:
        job = self.s.jobs[job_id]
        if job.state not in IN_FLIGHT_STATES or job.due_at is None or job.due_at > now:
            return False
        job.state, job.error_code, job.error_message = JobState.FAILED, "delivery_lost", message
        job.due_at, job.finished_at = None, now
        return True

    def count(self, where: JobFilter) -> int:
        return len(self.find(where, None, len(self.s.jobs)))

    def find(self, where: JobFilter, after: JobCursor | None, limit: int) -> list[WritebackJob]:
        def matches(job: WritebackJob) -> bool:
            session = self.s.sessions[job.session_id]
            return (
                where.account_id in (None, job.account_id)
                and (not where.states or job.state in where.states)
                and (not where.kinds or job.kind in where.kinds)
                and (where.created_before is None or job.created_at < where.created_before)
                and where.connection_id in (None, session.psa_connection_id)
                and (after is None or (job.created_at, job.id) < (after.created_at, after.id))
            )

        found = sorted(
            filter(matches, self.s.jobs.values()), key=lambda j: (j.created_at, j.id), reverse=True
        )
        return found[:limit]

    def requeue_failed(self, job_id: str, step: Step, now: datetime, due_at: datetime) -> bool:
        job = self.s.jobs[job_id]
        if job.state != JobState.FAILED:
            return False
        running = self.in_flight_for_session(job.session_id)
        if running is not None:
            raise JobInFlight(running.id)
        job.state, job.step, job.attempts, job.redeliveries = JobState.QUEUED, step, 0, 0
        job.error_code = job.error_message = job.delivery_id = job.finished_at = None
        job.due_at, job.updated_at = due_at, now
        return True

    def add_event(self, event: JobEvent) -> None:
        self.s.events.append(event)

    def events(self, job_id: str) -> list[JobEvent]:
        return [e for e in self.s.events if e.job_id == job_id]


class FakeDrafts:
    def __init__(self, store: Store) -> None:
        self.s = store

    def get(self, key: str) -> Draft | None:
        return self.s.drafts.get(key)

    def put(self, key: str, account_id: int, draft: Draft) -> None:
        self.s.drafts.setdefault(key, draft)


class FakeUnitOfWork:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.accounts = FakeAccounts(store)
        self.connections = FakeConnections(store)
        self.sessions = FakeSessions(store)
        self.jobs = FakeJobs(store)
        self.drafts = FakeDrafts(store)

    def __enter__(self) -> FakeUnitOfWork:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def commit(self) -> None:
        self.store.commits += 1

    def rollback(self) -> None:
        pass


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
            raise PsaTransientError("POST notes failed: ConnectionError")
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


class FakeRegistry:
    def __init__(self, provider: FakePsaProvider) -> None:
        self.provider = provider

    def credential_fields(self, provider: str) -> tuple[str, ...] | None:
        return ("public_key", "private_key", "client_id") if provider == "connectwise" else None

    def build(self, connection: PsaConnection) -> FakePsaProvider:
        return self.provider


class FakeQueue:
    def __init__(self) -> None:
        self.enqueued: list[tuple[str, Step]] = []
        self.broken = False

    def enqueue(self, job_id: str, from_step: Step) -> None:
        if self.broken:
            raise ConnectionError("broker down")
        self.enqueued.append((job_id, from_step))


class FakeSealer:
    """Reversible but not plain text, so a test can tell sealed from unsealed."""

    def seal(self, credentials: dict[str, str]) -> bytes:
        return json.dumps(credentials).encode()[::-1]

    def open(self, sealed: bytes) -> dict[str, str]:
        opened: dict[str, str] = json.loads(sealed[::-1])
        return opened
