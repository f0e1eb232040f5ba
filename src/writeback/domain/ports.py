"""What the domain needs from the outside world, as Protocols the adapters implement."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

from writeback.domain.job_versions import JobVersion
from writeback.domain.model import (
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
    PromptInput,
    PsaConnection,
    StatusMapping,
    Step,
    StepLoad,
    Ticket,
    User,
    WritebackJob,
)


class PsaProvider(Protocol):
    """One PSA tenant. Vendor JSON never leaves the implementing module."""

    def post_note(self, ticket_id: str, text: str, note_type: NoteType) -> PostedNote: ...

    def find_note(self, ticket_id: str, marker: str) -> PostedNote | None: ...

    def get_ticket(self, ticket_id: str) -> Ticket: ...

    def update_ticket_status(self, ticket_id: str, status_id: int) -> None: ...

    def list_boards(self) -> list[Board]: ...

    def list_statuses(self, board_id: int | None) -> list[BoardStatus]: ...

    def check_connection(self) -> None:
        """Raise a PsaError whose `failed` names what is wrong; return when all is well."""
        ...


class ProviderRegistry(Protocol):
    """The PSA vendors we speak to, keyed by provider name."""

    def credential_fields(self, provider: str) -> tuple[str, ...] | None:
        """The credential keys the provider needs; None for an unknown provider."""
        ...

    def configure(
        self, provider: str, site_url: str, options: Mapping[str, Any] | None
    ) -> tuple[str, dict[str, Any] | None]:
        """The site URL as the provider's API wants it, and the options validated
        (InvalidInput names `options.<field>`)."""
        ...

    def build(
        self,
        connection: PsaConnection,
        requests: int = 1,
        *,
        before_write: Callable[[], None] | None = None,
    ) -> PsaProvider:
        """A provider for the connection; `requests` it is about to send are taken from the
        PSA's budget at once (a spent budget raises BudgetWait before anything is sent).
        `before_write` is called right before each request but a GET or HEAD is sent, once the
        budget and any concurrency slot are granted; what it raises aborts that request unsent
        and propagates unchanged."""
        ...


class Drafter(Protocol):
    """Turns a (redacted) prompt input into a document. `fingerprint` identifies exactly what
    it would send (model, instructions, input), so a cache keyed by it can never go stale."""

    def fingerprint(self, prompt: PromptInput) -> str: ...

    def draft(self, prompt: PromptInput) -> Draft: ...


class DraftRepository(Protocol):
    def get(self, key: str) -> Draft | None: ...

    def put(self, key: str, account_id: int, draft: Draft) -> None: ...


class CredentialSealer(Protocol):
    def seal(self, credentials: dict[str, str]) -> bytes: ...

    def open(self, sealed: bytes) -> dict[str, str]: ...


class JobQueue(Protocol):
    """The broker, seen as: one message per job step, addressed by a message id we choose."""

    def new_message_id(self) -> str: ...

    def enqueue(self, job_id: str, step: Step, message_id: str) -> None: ...

    def lost(self, message_id: str) -> bool:
        """True only when the broker provably no longer holds `message_id` (it lost its data
        since the message was sent)."""
        ...


class AccountRepository(Protocol):
    def add_account(self, account: Account) -> None: ...

    def get_account(self, account_id: int) -> Account | None: ...

    def add_user(self, user: User) -> None: ...

    def add_token(self, token: ApiToken) -> None: ...

    def token_by_hash(self, token_hash: str) -> ApiToken | None: ...

    def settings(self, account_id: int) -> AccountSettings | None: ...

    def add_settings(self, settings: AccountSettings) -> None: ...


class ConnectionRepository(Protocol):
    def add(self, connection: PsaConnection) -> None: ...

    def get(self, connection_id: int, account_id: int | None = None) -> PsaConnection | None: ...

    def status_map(self, connection_id: int) -> list[StatusMapping]: ...

    def replace_status_map(self, connection_id: int, mappings: Sequence[StatusMapping]) -> None: ...

    def count_sealed(self) -> int: ...

    def sealed_after(self, after_id: int, limit: int) -> list[tuple[int, bytes]]:
        """(connection id, sealed credentials) after `after_id`, in id order."""
        ...

    def replace_sealed(self, connection_id: int, old: bytes, new: bytes) -> bool: ...


class SessionRepository(Protocol):
    def add(self, session: AiSession) -> None: ...

    def get(
        self, session_id: int, account_id: int | None = None, *, lock: bool = False
    ) -> AiSession | None:
        """`lock`: the row is locked until the transaction ends (SELECT ... FOR UPDATE)."""
        ...

    def close(self, session_id: int, kind: JobKind, markdown: str, now: datetime) -> None: ...


class JobRepository(Protocol):
    def add(self, job: WritebackJob) -> None:
        """Insert; raises the Conflict naming the job that blocks it (closed_conflict)."""
        ...

    def get(self, job_id: str, account_id: int | None = None) -> WritebackJob | None: ...

    def for_step(self, job_id: str) -> StepLoad | None:
        """The job, its session, the job's connection and the database's now, in one read."""
        ...

    def save(
        self, job: WritebackJob, *, lease_alive: bool = False, lease_expired: bool = False
    ) -> bool:
        """Write the job's transition if nobody changed it since it was loaded; with
        `lease_alive`, only while its stored lease has not run out by the database's clock (a
        fenced write), with `lease_expired` only once it has (a takeover)."""
        ...

    def heartbeat(self, job_id: str, message_id: str, lease: float) -> bool:
        """Renew a running step's lease to `lease` seconds past the database's now. Not a
        transition: the version stays, so the step's own result still saves."""
        ...

    def sent(self, job_id: str, message_id: str) -> None:
        """The broker has the job's message: stamp `sent_at` (the database's now)."""
        ...

    def blocking(
        self, session_id: int, kind: JobKind, excluding: str | None = None
    ) -> WritebackJob | None: ...

    def ticket_holder(self, session_id: int) -> WritebackJob | None:
        """A job of the session that may still write to its ticket: in flight, or one that
        may have posted (its ticket cannot change under it)."""
        ...

    def occupied_slots(self, tenant: str) -> int | None:
        """The tenant's jobs with a message out: in the broker, or running under it. Counted
        under the tenant's admission lock, held until the transaction ends, so the slots are
        a hard bound; None when another transaction holds it (and fills the slots itself):
        an admission never waits for another."""
        ...

    def tenants_waiting(self, now: datetime) -> dict[str, int]:
        """Tenants with held jobs due by `now`, each with its occupied slots."""
        ...

    # The scheduler's scans lock the rows they return and skip rows another transaction
    # holds (FOR UPDATE SKIP LOCKED): a worker frozen inside a transaction delays its own job,
    # never the sweep.

    def held_due(self, tenant: str, now: datetime, limit: int) -> list[WritebackJob]: ...

    def lease_expired(self, now: datetime, limit: int) -> list[WritebackJob]: ...

    def unsent(self, committed_before: datetime, limit: int) -> list[WritebackJob]:
        """Jobs waiting on a message that is not known to be sent, unchanged since before
        `committed_before`."""
        ...

    def outstanding(self, limit: int) -> list[WritebackJob]:
        """Jobs waiting on a message the broker took, oldest sent first."""
        ...

    def record_sweep(self, now: datetime) -> None: ...

    def last_sweep(self) -> datetime | None: ...

    def find(self, where: JobFilter, after: JobCursor | None, limit: int) -> list[WritebackJob]:
        """Jobs matching `where`, newest first, starting after `after`."""
        ...

    def count(self, where: JobFilter) -> int: ...

    def count_by_state(self, job_ids: Sequence[str]) -> dict[JobState, int]: ...

    def add_event(self, event: JobEvent) -> None: ...

    def events(self, job_id: str, after_id: int = 0) -> list[JobEvent]: ...


class UnitOfWork(Protocol):
    accounts: AccountRepository
    connections: ConnectionRepository
    sessions: SessionRepository
    jobs: JobRepository
    drafts: DraftRepository

    def now(self) -> datetime:
        """The database's clock: the one time every process agrees on (a host's may be off)."""
        ...

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
Clock = Callable[[], datetime]
Monotonic = Callable[[], float]  # seconds, for measuring spans: never jumps, never shared
Sleep = Callable[[float], None]


class Flag(Protocol):
    def set(self) -> None: ...

    def wait(self, timeout: float) -> bool:
        """True once set; False when `timeout` seconds passed first."""
        ...


class Threads(Protocol):
    """Where background work runs: OS threads in the service, simulated ones in the lifecycle
    simulator (which decides when each one runs)."""

    def flag(self) -> Flag: ...

    def start(self, target: Callable[[], None]) -> Callable[[], None]:
        """Run `target` in the background; returns the function that waits for it to end."""
        ...


class Subscription(Protocol):
    """Wake-ups for one job: `wait` returns True when a transition was published, False when
    `timeout` passed without one. Readers then read the store: a publish is a hint, never the
    record, so a missed one costs latency, not events."""

    def wait(self, timeout: float) -> bool: ...

    def close(self) -> None: ...


class JobFeed(Protocol):
    """Committed job transitions, told to whoever follows the job (pollers, event streams).
    `publish` is called by the unit of work after each commit that changes a job; it never
    raises: the commit already happened. Followers read the events from the store."""

    def publish(self, job: WritebackJob) -> None: ...

    def version(self, job_id: str) -> JobVersion | None:
        """The job's last published version, or None when unknown (never published, expired,
        or the feed cannot keep versions): the caller then reads the store."""
        ...

    def subscribe(self, job_id: str) -> Subscription: ...
