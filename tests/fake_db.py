"""The database, in memory, with PostgreSQL's semantics where the domain depends on them.

Each unit of work is a transaction at READ COMMITTED: a read sees what is committed, plus the
transaction's own writes; a write takes the row's lock until the transaction ends, and a guarded
write (`save`, `heartbeat`) is judged against the newest committed row once the lock is held, as
PostgreSQL re-checks an UPDATE's WHERE after waiting. The two partial unique indexes of jobs and
the tenant's admission lock are locks too. Loaded sessions, connections and settings are written
back at commit when changed, as the ORM flushes dirty objects.

Outside the lifecycle simulator transactions never overlap, so a lock held by another one is a
bug in the test; inside it, `Store.wait` yields to the other actors until the lock is free. The
contract suite (`tests/contract/test_job_repository_contract.py`) runs the same cases against this
fake and the SQL repository, so the two cannot drift.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from writeback.domain.errors import JobInFlight, StoreUnavailable
from writeback.domain.model import (
    SESSION_STATUS_BY_KIND,
    WAITING_STATES,
    Account,
    AccountSettings,
    AiSession,
    ApiToken,
    Draft,
    JobCursor,
    JobEvent,
    JobFilter,
    JobKind,
    JobState,
    PsaConnection,
    StatusMapping,
    StepLoad,
    User,
    WritebackJob,
    closed_conflict,
    utcnow,
)
from writeback.domain.ports import JobFeed

_GONE = object()  # a deleted row, in a transaction's own writes


@dataclass
class Store:
    """What is committed. `clock` is the database server's own clock."""

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
    sweeps: dict[str, datetime] = field(default_factory=dict)
    commits: int = 0
    clock: Callable[[], datetime] = utcnow
    # Held locks and their transaction; `wait` is how a blocked transaction lets others run.
    locks: dict[Hashable, object] = field(default_factory=dict)
    waits: dict[object, Hashable] = field(default_factory=dict)  # who waits for which lock
    wait: Callable[[], None] | None = None
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def next_id(self) -> int:
        return next(self._ids)


def _owned(obj: Any, account_id: int | None) -> Any:
    if obj is None or (account_id is not None and obj.account_id != account_id):
        return None
    return obj


def closes_session(job: WritebackJob) -> bool:
    """The predicate of the partial unique index on (session, kind) (tables.CLOSES_SESSION)."""
    may_have_closed = job.state is not JobState.FAILED or job.post_started_at is not None
    return may_have_closed and job.duplicate_of is None


class FakeUnitOfWork:
    """One transaction. `autocommit`: every write commits at once (the claim's connection)."""

    def __init__(
        self, store: Store, feed: JobFeed | None = None, *, autocommit: bool = False
    ) -> None:
        self.store = store
        self.feed = feed
        self.autocommit = autocommit
        self.committed = False

    def __enter__(self) -> FakeUnitOfWork:
        self._writes: dict[tuple[str, Hashable], Any] = {}
        self._loaded: dict[tuple[str, Hashable], tuple[Any, Any]] = {}  # (handed out, as read)
        self._events: list[JobEvent] = []
        self._held: list[Hashable] = []
        self._changed: list[WritebackJob] = []
        self.accounts = FakeAccounts(self)
        self.connections = FakeConnections(self)
        self.sessions = FakeSessions(self)
        self.jobs = FakeJobs(self)
        self.drafts = FakeDrafts(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._end()

    def now(self) -> datetime:
        return self.store.clock()

    # Reads

    def row(self, table: str, key: Hashable) -> Any:
        """The row as this transaction sees it (not a copy: callers copy what they hand out)."""
        if (table, key) in self._writes:
            value = self._writes[(table, key)]
            return None if value is _GONE else value
        return getattr(self.store, table).get(key)

    def rows(self, table: str) -> list[Any]:
        committed: dict[Hashable, Any] = dict(getattr(self.store, table))
        for (name, key), value in self._writes.items():
            if name == table:
                committed[key] = value
        return [v for v in committed.values() if v is not _GONE]

    def load(self, table: str, key: Hashable) -> Any:
        """An entity the caller may change in place: written back at commit if it changed."""
        if (table, key) in self._loaded:
            return self._loaded[(table, key)][0]
        row = self.row(table, key)
        if row is None:
            return None
        handed = copy.deepcopy(row)
        self._loaded[(table, key)] = (handed, copy.deepcopy(row))
        return handed

    # Writes

    def lock(self, key: Hashable) -> None:
        """Wait for `key`; a wait that would close a cycle fails as PostgreSQL's deadlock
        detection fails one of the transactions."""
        store = self.store
        while store.locks.get(key, self) is not self:
            if store.wait is None:
                raise AssertionError(f"lock {key!r} held by another transaction")
            if self._would_deadlock(key):
                raise StoreUnavailable("The database did not answer: deadlock detected")
            store.waits[self] = key
            try:
                store.wait()
            finally:
                del store.waits[self]
        if key not in store.locks:
            store.locks[key] = self
            self._held.append(key)

    def try_lock(self, key: Hashable) -> bool:
        """Take `key` if no other transaction holds it (pg_try_advisory_xact_lock, SKIP LOCKED)."""
        if self.store.locks.get(key, self) is not self:
            return False
        self.lock(key)
        return True

    def _would_deadlock(self, key: Hashable) -> bool:
        holder = self.store.locks.get(key)
        seen = set()
        while holder is not None and holder not in seen:
            if holder is self:
                return True
            seen.add(holder)
            waiting_for = self.store.waits.get(holder)
            holder = self.store.locks.get(waiting_for) if waiting_for is not None else None
        return False

    def write(self, table: str, key: Hashable, value: Any) -> None:
        self.lock((table, key))
        self._writes[(table, key)] = value
        if self.autocommit:  # each statement commits, and lets go of its locks, alone
            self._apply()
            self._release()

    def changed(self, job: WritebackJob) -> None:
        """A job this transaction wrote: published to the job feed once committed."""
        self._changed.append(copy.deepcopy(job))

    def add_event(self, event: JobEvent) -> None:
        self._events.append(event)
        if self.autocommit:
            self._apply()

    def commit(self) -> None:
        for (table, key), (handed, as_read) in self._loaded.items():
            if handed != as_read:
                self.write(table, key, copy.deepcopy(handed))
        self._apply()
        self.committed = True
        self._end()

    def rollback(self) -> None:
        self._writes.clear()
        self._events.clear()
        self._changed.clear()
        self._loaded.clear()
        self._release()

    def _apply(self) -> None:
        for (table, key), value in self._writes.items():
            rows = getattr(self.store, table)
            if value is _GONE:
                rows.pop(key, None)
            else:
                rows[key] = value
        for event in self._events:
            event.id = len(self.store.events) + 1
            self.store.events.append(event)
        self.store.commits += 1
        changed = {job.id: job for job in self._changed}
        self._writes.clear()
        self._events.clear()
        self._changed.clear()
        for job in changed.values() if self.feed is not None else ():
            self.feed.publish(job)  # type: ignore[union-attr]

    def _release(self) -> None:
        for key in self._held:
            if self.store.locks.get(key) is self:
                del self.store.locks[key]
        self._held.clear()

    def _end(self) -> None:
        self._writes.clear()
        self._events.clear()
        self._changed.clear()
        self._release()


class FakeAccounts:
    def __init__(self, tx: FakeUnitOfWork) -> None:
        self.tx = tx

    def add_account(self, account: Account) -> None:
        account.id = self.tx.store.next_id()
        self.tx.write("accounts", account.id, account)

    def get_account(self, account_id: int) -> Account | None:
        return self.tx.load("accounts", account_id)  # type: ignore[no-any-return]

    def add_user(self, user: User) -> None:
        user.id = self.tx.store.next_id()
        self.tx.write("users", user.id, user)

    def add_token(self, token: ApiToken) -> None:
        self.tx.write("tokens", token.token_hash, token)

    def token_by_hash(self, token_hash: str) -> ApiToken | None:
        return self.tx.load("tokens", token_hash)  # type: ignore[no-any-return]

    def settings(self, account_id: int) -> AccountSettings | None:
        return self.tx.load("settings", account_id)  # type: ignore[no-any-return]

    def add_settings(self, settings: AccountSettings) -> None:
        self.tx.write("settings", settings.account_id, settings)


class FakeConnections:
    def __init__(self, tx: FakeUnitOfWork) -> None:
        self.tx = tx

    def add(self, connection: PsaConnection) -> None:
        connection.id = self.tx.store.next_id()
        self.tx.write("connections", connection.id, connection)

    def get(self, connection_id: int, account_id: int | None = None) -> PsaConnection | None:
        return _owned(self.tx.load("connections", connection_id), account_id)  # type: ignore[no-any-return]

    def status_map(self, connection_id: int) -> list[StatusMapping]:
        return copy.deepcopy(self.tx.row("status_maps", connection_id) or [])

    def replace_status_map(self, connection_id: int, mappings: Sequence[StatusMapping]) -> None:
        self.tx.write("status_maps", connection_id, list(mappings))


class FakeSessions:
    def __init__(self, tx: FakeUnitOfWork) -> None:
        self.tx = tx

    def add(self, session: AiSession) -> None:
        session.id = self.tx.store.next_id()
        self.tx.write("sessions", session.id, session)

    def get(
        self, session_id: int, account_id: int | None = None, *, lock: bool = False
    ) -> AiSession | None:
        if lock:
            self.tx.lock(("sessions", session_id))
        return _owned(self.tx.load("sessions", session_id), account_id)  # type: ignore[no-any-return]

    def close(self, session_id: int, kind: JobKind, markdown: str, now: datetime) -> None:
        """One statement, as the SQL repository's: the newest committed row, changed."""
        self.tx.lock(("sessions", session_id))
        session = copy.deepcopy(self.tx.row("sessions", session_id))
        session.status = SESSION_STATUS_BY_KIND[kind]
        if kind is JobKind.RESOLVE:
            session.resolution_note_markdown, session.resolved_at = markdown, now
        else:
            session.escalation_package_markdown, session.escalated_at = markdown, now
        session.state_version += 1
        session.updated_at = now
        self.tx.write("sessions", session_id, session)


class FakeJobs:
    """Rows in, copies out, saves guarded by version under the row's lock, and the schema's two
    partial unique indexes: what the SQL repository does, in memory."""

    def __init__(self, tx: FakeUnitOfWork) -> None:
        self.tx = tx

    def _jobs(self) -> list[WritebackJob]:
        return self.tx.rows("jobs")  # type: ignore[no-any-return]

    def _check_indexes(self, job: WritebackJob) -> None:
        # Writers of one session's jobs take turns, as inserts of one index key do.
        self.tx.lock(("uq_session", job.session_id))
        others = [j for j in self._jobs() if j.id != job.id and j.session_id == job.session_id]
        second_in_flight = job.in_flight and any(j.in_flight for j in others)
        second_close = closes_session(job) and any(
            j.kind is job.kind and closes_session(j) for j in others
        )
        if second_in_flight or second_close:
            blocking = self.blocking(job.session_id, job.kind, excluding=job.id)
            if blocking is None:
                raise JobInFlight("unknown")
            raise closed_conflict(blocking)

    def _store(self, job: WritebackJob) -> None:
        job.loaded_version = job.version
        self.tx.write("jobs", job.id, copy.deepcopy(job))
        self.tx.changed(job)

    def add(self, job: WritebackJob) -> None:
        self._check_indexes(job)
        self._store(job)

    def get(self, job_id: str, account_id: int | None = None) -> WritebackJob | None:
        return copy.deepcopy(_owned(self.tx.row("jobs", job_id), account_id))

    def for_step(self, job_id: str) -> StepLoad | None:
        job = self.get(job_id)
        if job is None:
            return None
        session = self.tx.row("sessions", job.session_id)
        connection = self.tx.row("connections", job.psa_connection_id)
        now = self.tx.store.clock()
        return StepLoad(job, copy.deepcopy(session), copy.deepcopy(connection), now)

    def save(
        self, job: WritebackJob, *, lease_alive: bool = False, lease_expired: bool = False
    ) -> bool:
        self.tx.lock(("jobs", job.id))
        stored = self.tx.row("jobs", job.id)
        if stored is None or stored.version != job.loaded_version:
            return False
        now = self.tx.store.clock()
        lease_until = stored.lease_until
        if lease_alive and not (lease_until is not None and lease_until > now):
            return False
        if lease_expired and not (lease_until is not None and lease_until < now):
            return False
        self._check_indexes(job)
        self._store(job)
        return True

    def _update(self, job_id: str, **values: Any) -> None:
        """A statement that changes a few columns of the newest committed row (no transition)."""
        changed = copy.deepcopy(self.tx.row("jobs", job_id))
        changed.__dict__.update(values)
        self.tx.write("jobs", job_id, changed)

    def heartbeat(self, job_id: str, message_id: str, lease: float) -> bool:
        self.tx.lock(("jobs", job_id))
        job = self.tx.row("jobs", job_id)
        if job is None or job.message_id != message_id or job.state is not JobState.RUNNING:
            return False
        renewed = self.tx.store.clock() + timedelta(seconds=lease)
        self._update(job_id, lease_until=max(job.lease_until or renewed, renewed))
        return True

    def sent(self, job_id: str, message_id: str) -> None:
        self.tx.lock(("jobs", job_id))
        job = self.tx.row("jobs", job_id)
        if job is not None and job.message_id == message_id and job.sent_at is None:
            self._update(job_id, sent_at=self.tx.store.clock())

    def ticket_holder(self, session_id: int) -> WritebackJob | None:
        holders = [
            j
            for j in self._jobs()
            if j.session_id == session_id and (j.in_flight or j.post_started_at is not None)
        ]
        return copy.deepcopy(max(holders, key=lambda j: j.created_at)) if holders else None

    def blocking(
        self, session_id: int, kind: JobKind, excluding: str | None = None
    ) -> WritebackJob | None:
        found = [
            j
            for j in self._jobs()
            if j.session_id == session_id
            and j.id != excluding
            and (j.in_flight or (j.kind is kind and closes_session(j)))
        ]
        return copy.deepcopy(max(found, key=lambda j: j.created_at)) if found else None

    def _in_flight(self, tenant: str | None = None) -> list[WritebackJob]:
        return [j for j in self._jobs() if j.in_flight and tenant in (None, j.tenant)]

    def occupied_slots(self, tenant: str) -> int | None:
        if not self.tx.try_lock(("admission", tenant)):  # pg_try_advisory_xact_lock
            return None
        return sum(1 for j in self._in_flight(tenant) if j.message_id is not None)

    def _locked(self, jobs: list[WritebackJob], limit: int) -> list[WritebackJob]:
        """FOR UPDATE SKIP LOCKED: up to `limit` of `jobs` no other transaction holds."""
        mine = [j for j in jobs if self.tx.try_lock(("jobs", j.id))][:limit]
        return copy.deepcopy(mine)

    def tenants_waiting(self, now: datetime) -> dict[str, int]:
        due = [j.tenant for j in self._in_flight() if j.held and j.due_at and j.due_at <= now]
        tenants = sorted(set(due))
        return {
            tenant: sum(1 for j in self._in_flight(tenant) if j.message_id is not None)
            for tenant in tenants
        }

    def held_due(self, tenant: str, now: datetime, limit: int) -> list[WritebackJob]:
        due = [j for j in self._in_flight(tenant) if j.held and j.due_at and j.due_at <= now]
        due.sort(key=lambda j: (j.due_at or now, j.created_at, j.id))
        return self._locked(due, limit)

    def lease_expired(self, now: datetime, limit: int) -> list[WritebackJob]:
        expired = [
            j
            for j in self._in_flight()
            if j.state is JobState.RUNNING and j.lease_until and j.lease_until < now
        ]
        return self._locked(expired, limit)

    def unsent(self, committed_before: datetime, limit: int) -> list[WritebackJob]:
        waiting = [
            j
            for j in self._in_flight()
            if j.state in WAITING_STATES
            and j.message_id is not None
            and j.sent_at is None
            and j.updated_at < committed_before
        ]
        return self._locked(sorted(waiting, key=lambda j: (j.updated_at, j.id)), limit)

    def outstanding(self, limit: int) -> list[WritebackJob]:
        waiting = [
            j
            for j in self._in_flight()
            if j.state in WAITING_STATES and j.message_id is not None and j.sent_at is not None
        ]
        return self._locked(sorted(waiting, key=lambda j: (j.sent_at, j.id)), limit)

    def record_sweep(self, now: datetime) -> None:
        self.tx.write("sweeps", "sweep", now)

    def last_sweep(self) -> datetime | None:
        return self.tx.row("sweeps", "sweep")  # type: ignore[no-any-return]

    def count(self, where: JobFilter) -> int:
        return len(self.find(where, None, len(self._jobs())))

    def count_by_state(self, job_ids: Sequence[str]) -> dict[JobState, int]:
        counts: dict[JobState, int] = {}
        for job_id in job_ids:
            state = self.tx.row("jobs", job_id).state
            counts[state] = counts.get(state, 0) + 1
        return counts

    def find(self, where: JobFilter, after: JobCursor | None, limit: int) -> list[WritebackJob]:
        def matches(job: WritebackJob) -> bool:
            session = self.tx.row("sessions", job.session_id)
            return (
                where.account_id in (None, job.account_id)
                and (not where.states or job.state in where.states)
                and (not where.kinds or job.kind in where.kinds)
                and (where.created_before is None or job.created_at < where.created_before)
                and where.connection_id in (None, session.psa_connection_id)
                and (after is None or (job.created_at, job.id) < (after.created_at, after.id))
            )

        found = sorted(
            filter(matches, self._jobs()), key=lambda j: (j.created_at, j.id), reverse=True
        )
        return copy.deepcopy(found[:limit])

    def add_event(self, event: JobEvent) -> None:
        self.tx.add_event(event)

    def events(self, job_id: str, after_id: int = 0) -> list[JobEvent]:
        return [e for e in self.tx.store.events if e.job_id == job_id and (e.id or 0) > after_id]


class FakeDrafts:
    def __init__(self, tx: FakeUnitOfWork) -> None:
        self.tx = tx

    def get(self, key: str) -> Draft | None:
        return self.tx.row("drafts", key)  # type: ignore[no-any-return]

    def put(self, key: str, account_id: int, draft: Draft) -> None:
        if self.tx.row("drafts", key) is None:  # two drafts of one state are equivalent
            self.tx.write("drafts", key, draft)
