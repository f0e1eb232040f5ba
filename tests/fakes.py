"""In-memory fakes of the domain's ports, for unit tests. They record state instead of being
patched in; the provider contract suite runs against FakePsaProvider too, so it cannot drift
from the real providers."""

from __future__ import annotations

import copy
import itertools
import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from writeback.domain.errors import (
    PsaAmbiguousError,
    PsaAuthError,
    PsaNotFound,
    PsaRejected,
)
from writeback.domain.model import (
    SESSION_STATUS_BY_KIND,
    WAITING_STATES,
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
    JobKind,
    JobState,
    NoteType,
    PostedNote,
    PsaConnection,
    StatusMapping,
    Step,
    StepLoad,
    Ticket,
    User,
    WritebackJob,
    closed_conflict,
)
from writeback.domain.ports import JobFeed

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

    def close(self, session_id: int, kind: JobKind, markdown: str, now: datetime) -> None:
        session = self.s.sessions[session_id]
        session.status = SESSION_STATUS_BY_KIND[kind]
        if kind is JobKind.RESOLVE:
            session.resolution_note_markdown, session.resolved_at = markdown, now
        else:
            session.escalation_package_markdown, session.escalated_at = markdown, now
        session.state_version += 1
        session.updated_at = now


def _closes_session(job: WritebackJob) -> bool:
    return job.state is not JobState.FAILED or job.post_started_at is not None


class FakeJobs:
    """Rows in, copies out, saves guarded by version, and the schema's two partial unique
    indexes: what the SQL repository does, in memory."""

    def __init__(self, store: Store) -> None:
        self.s = store
        self.changed: list[WritebackJob] = []  # published by the unit of work on commit

    def _check_indexes(self, job: WritebackJob) -> None:
        others = [
            j for j in self.s.jobs.values() if j.id != job.id and j.session_id == job.session_id
        ]
        second_in_flight = job.in_flight and any(j.in_flight for j in others)
        second_close = _closes_session(job) and any(
            j.kind is job.kind and _closes_session(j) for j in others
        )
        if second_in_flight or second_close:
            blocking = self.blocking(job.session_id, job.kind, excluding=job.id)
            assert blocking is not None
            raise closed_conflict(blocking)

    def add(self, job: WritebackJob) -> None:
        self._check_indexes(job)
        job.loaded_version = job.version
        self.s.jobs[job.id] = copy.deepcopy(job)
        self.changed.append(copy.deepcopy(job))

    def get(self, job_id: str, account_id: int | None = None) -> WritebackJob | None:
        return copy.deepcopy(_owned(self.s.jobs.get(job_id), account_id))

    def for_step(self, job_id: str) -> StepLoad | None:
        job = self.get(job_id)
        if job is None:
            return None
        session = self.s.sessions.get(job.session_id)
        connection_id = session.psa_connection_id if session else None
        connection = self.s.connections.get(connection_id) if connection_id else None
        return StepLoad(job, copy.deepcopy(session), copy.deepcopy(connection))

    def save(self, job: WritebackJob) -> bool:
        stored = self.s.jobs.get(job.id)
        if stored is None or stored.version != job.loaded_version:
            return False
        self._check_indexes(job)
        job.loaded_version = job.version
        self.s.jobs[job.id] = copy.deepcopy(job)
        self.changed.append(copy.deepcopy(job))
        return True

    def heartbeat(self, job_id: str, message_id: str, lease_until: datetime) -> bool:
        job = self.s.jobs.get(job_id)
        if job is None or job.message_id != message_id or job.state is not JobState.RUNNING:
            return False
        job.lease_until = lease_until
        return True

    def blocking(
        self, session_id: int, kind: JobKind, excluding: str | None = None
    ) -> WritebackJob | None:
        found = [
            j
            for j in self.s.jobs.values()
            if j.session_id == session_id
            and j.id != excluding
            and (j.in_flight or (j.kind is kind and _closes_session(j)))
        ]
        return copy.deepcopy(max(found, key=lambda j: j.created_at)) if found else None

    def _in_flight(self, tenant: str | None = None) -> list[WritebackJob]:
        return [j for j in self.s.jobs.values() if j.in_flight and tenant in (None, j.tenant)]

    def occupied_slots(self, tenant: str) -> int:
        return sum(1 for j in self._in_flight(tenant) if j.message_id is not None)

    def tenants_waiting(self, now: datetime) -> dict[str, int]:
        tenants = {j.tenant for j in self._in_flight() if j.held and j.due_at and j.due_at <= now}
        return {tenant: self.occupied_slots(tenant) for tenant in tenants}

    def held_due(self, tenant: str, now: datetime, limit: int) -> list[WritebackJob]:
        due = [j for j in self._in_flight(tenant) if j.held and j.due_at and j.due_at <= now]
        due.sort(key=lambda j: (j.due_at or now, j.created_at))
        return copy.deepcopy(due[:limit])

    def lease_expired(self, now: datetime, limit: int) -> list[WritebackJob]:
        return copy.deepcopy(
            [
                j
                for j in self._in_flight()
                if j.state is JobState.RUNNING and j.lease_until and j.lease_until < now
            ][:limit]
        )

    def outstanding(self, not_picked_since: datetime, limit: int) -> list[WritebackJob]:
        waiting = [
            j
            for j in self._in_flight()
            if j.state in WAITING_STATES
            and j.message_id is not None
            and j.updated_at < not_picked_since
        ]
        return copy.deepcopy(sorted(waiting, key=lambda j: j.updated_at)[:limit])

    def count(self, where: JobFilter) -> int:
        return len(self.find(where, None, len(self.s.jobs)))

    def count_by_state(self, job_ids: Sequence[str]) -> dict[JobState, int]:
        counts: dict[JobState, int] = defaultdict(int)
        for job_id in job_ids:
            counts[self.s.jobs[job_id].state] += 1
        return dict(counts)

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
        return copy.deepcopy(found[:limit])

    def add_event(self, event: JobEvent) -> None:
        event.id = len(self.s.events) + 1
        self.s.events.append(event)

    def events(self, job_id: str, after_id: int = 0) -> list[JobEvent]:
        return [e for e in self.s.events if e.job_id == job_id and (e.id or 0) > after_id]


class FakeDrafts:
    def __init__(self, store: Store) -> None:
        self.s = store

    def get(self, key: str) -> Draft | None:
        return self.s.drafts.get(key)

    def put(self, key: str, account_id: int, draft: Draft) -> None:
        self.s.drafts.setdefault(key, draft)


class FakeUnitOfWork:
    """Stages every write on a copy of the store: commit publishes it, anything else (an
    exception, a return without commit) drops it, as a database transaction would."""

    def __init__(self, store: Store, feed: JobFeed | None = None) -> None:
        self.store = store
        self.feed = feed
        self.committed = False

    def __enter__(self) -> FakeUnitOfWork:
        self._staged = copy.deepcopy(self.store)
        self.accounts = FakeAccounts(self._staged)
        self.connections = FakeConnections(self._staged)
        self.sessions = FakeSessions(self._staged)
        self.jobs = FakeJobs(self._staged)
        self.drafts = FakeDrafts(self._staged)
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def commit(self) -> None:
        commits = self.store.commits + 1
        self.store.__dict__.update(copy.deepcopy(self._staged).__dict__)
        self.store.commits = commits
        self._staged.commits = commits
        self.committed = True
        changed = {job.id: job for job in self.jobs.changed}
        self.jobs.changed.clear()
        for job in changed.values() if self.feed is not None else ():
            self.feed.publish(job, ())  # type: ignore[union-attr]

    def rollback(self) -> None:
        self.__enter__()


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
        # The registry's hook, called before each write as the real HTTP client does.
        self.before_write: Callable[[], None] | None = None
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

    def _write(self, method: str, ticket_id: str) -> Ticket:
        if self.before_write is not None:
            self.before_write()
        return self._enter(method, ticket_id)

    def post_note(self, ticket_id: str, text: str, note_type: NoteType) -> PostedNote:
        self._write("post_note", ticket_id)
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
        ticket = self._write("update_ticket_status", ticket_id)
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
    ) -> FakePsaProvider:
        self.provider.before_write = before_write
        return self.provider


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
