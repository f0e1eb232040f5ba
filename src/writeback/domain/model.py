"""Entities and value objects of the writeback. Plain classes: the database adapter maps them."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from writeback.domain.errors import AlreadyClosed, Conflict, Failure, JobInFlight
from writeback.domain.retry import RetryPolicy


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobKind(enum.StrEnum):
    RESOLVE = "resolve"
    ESCALATE = "escalate"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# The one list of job states that still move; the API, the CLI, metrics, the repository and the
# partial indexes of the schema all derive from it.
IN_FLIGHT_STATES = (JobState.QUEUED, JobState.RUNNING, JobState.RETRYING)
WAITING_STATES = (JobState.QUEUED, JobState.RETRYING)  # not running: in the broker or held
FINAL_STATES = (JobState.SUCCEEDED, JobState.FAILED)


class Step(enum.StrEnum):
    """Pipeline steps in order; a job's `step` is the next one to run (or `done`)."""

    DRAFT = "draft"
    POST_NOTE = "post_note"
    TRANSITION_STATUS = "transition_status"
    VERIFY = "verify"
    FINALIZE = "finalize"
    DONE = "done"


PIPELINE: tuple[Step, ...] = (
    Step.DRAFT,
    Step.POST_NOTE,
    Step.TRANSITION_STATUS,
    Step.VERIFY,
    Step.FINALIZE,
)


def steps_from(step: Step) -> tuple[Step, ...]:
    """The pipeline's steps from `step` on (nothing once the job is done)."""
    return PIPELINE[PIPELINE.index(step) :] if step in PIPELINE else ()


class SessionStatus(enum.StrEnum):
    ACTIVE = "active"
    RESOLVED = "resolved"
    ESCALATED = "escalated"


class NoteType(enum.StrEnum):
    RESOLUTION = "resolution"  # customer-visible
    INTERNAL_ANALYSIS = "internal_analysis"  # handoff for the next engineer only


NOTE_TYPE_BY_KIND = {
    JobKind.RESOLVE: NoteType.RESOLUTION,
    JobKind.ESCALATE: NoteType.INTERNAL_ANALYSIS,
}
SESSION_STATUS_BY_KIND = {
    JobKind.RESOLVE: SessionStatus.RESOLVED,
    JobKind.ESCALATE: SessionStatus.ESCALATED,
}


@dataclass(frozen=True)
class Ticket:
    id: str
    status_id: int | None
    status_name: str | None
    board_id: int | None = None
    summary: str = ""


@dataclass(frozen=True)
class Board:
    """Where tickets live; ConnectWise statuses belong to a board. PSAs without boards expose
    one board with id None."""

    id: int | None
    name: str


@dataclass(frozen=True)
class BoardStatus:
    id: int
    name: str
    board_id: int | None
    inactive: bool = False
    closed: bool = False
    escalation: str | None = None  # ConnectWise's escalationStatus, e.g. "Resolved"


@dataclass(frozen=True)
class PostedNote:
    id: str
    ticket_id: str


@dataclass(frozen=True)
class Draft:
    markdown: str
    drafter: str  # which drafter produced it, e.g. "offline-template" or the model id
    usage: dict[str, int] | None = None  # model token usage, when a model drafted it


@dataclass(frozen=True)
class PromptInput:
    """Everything a drafter may use, already redacted. Its fingerprint keys the cache."""

    kind: JobKind
    intake: str
    messages: tuple[tuple[str, str], ...]  # (role, text)
    ticket_id: str | None
    secrets: frozenset[str]  # what redaction removed; never sent, never accepted back

    def fields(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "intake": self.intake,
            "messages": [list(m) for m in self.messages],
            "ticket_id": self.ticket_id,
        }


@dataclass
class Account:
    name: str
    created_at: datetime
    id: int | None = None


@dataclass
class User:
    account_id: int
    created_at: datetime
    id: int | None = None


@dataclass
class ApiToken:
    account_id: int
    user_id: int
    token_hash: str
    created_at: datetime
    id: int | None = None


@dataclass
class PsaConnection:
    account_id: int
    provider: str
    site_url: str
    company_id: str
    credentials_encrypted: bytes
    created_at: datetime
    is_active: bool = True
    id: int | None = None
    # Per-connection provider settings (accept version, picklist labels, auth URL, ...), as
    # given when the connection was made and validated by its provider; None: the defaults.
    options: dict[str, Any] | None = None


@dataclass
class StatusMapping:
    """Which status a writeback of `kind` moves tickets on `board_id` to: by id, or by name
    resolved against the board's statuses at run time. board_id None: any other board (and
    PSAs without boards)."""

    connection_id: int
    kind: str
    board_id: int | None = None
    status_id: int | None = None
    status_name: str | None = None
    id: int | None = None


@dataclass
class AccountSettings:
    """The account's fallback target statuses, for tickets no status map entry applies to (any
    PSA)."""

    account_id: int
    resolved_status_id: int | None = None
    escalated_status_id: int | None = None

    @staticmethod
    def target_setting(kind: JobKind) -> str:
        """The name of the setting that holds `kind`'s fallback target status."""
        return "resolved_status_id" if kind is JobKind.RESOLVE else "escalated_status_id"

    def target_status_id(self, kind: JobKind) -> int | None:
        status_id: int | None = getattr(self, self.target_setting(kind))
        return status_id


@dataclass
class AiSession:
    account_id: int
    user_id: int
    session_type: str
    intake_type: str
    created_at: datetime
    updated_at: datetime
    intake_content: dict[str, Any] = field(default_factory=dict)
    conversation_messages: list[dict[str, Any]] = field(default_factory=list)
    psa_connection_id: int | None = None
    psa_ticket_id: str | None = None
    status: str = SessionStatus.ACTIVE
    state_version: int = 1
    resolution_note_markdown: str | None = None
    escalation_package_markdown: str | None = None
    resolved_at: datetime | None = None
    escalated_at: datetime | None = None
    id: int | None = None

    @property
    def has_ticket(self) -> bool:
        return self.psa_connection_id is not None and self.psa_ticket_id is not None


def tenant_of(connection_id: int | None, account_id: int) -> str:
    """Whose admission slots a job uses: its PSA connection, or its account for a job with no
    ticket (no PSA involved). (The request budget is keyed by the PSA instance instead, which
    two connections to one PSA share: adapters/psa/budget.py.)"""
    return f"psa:{connection_id}" if connection_id is not None else f"local:{account_id}"


def closed_conflict(blocking: WritebackJob) -> Conflict:
    """Why a new writeback cannot start while `blocking` exists, naming it."""
    if blocking.in_flight:
        return JobInFlight(blocking.id)
    closed_as = SESSION_STATUS_BY_KIND[blocking.kind]
    if blocking.state is JobState.SUCCEEDED:
        return AlreadyClosed(
            f"Session {blocking.session_id} is already {closed_as}.",
            f"already_{closed_as}",
            blocking.id,
        )
    return Conflict(
        f"Job {blocking.id} failed after it may have posted its note to the ticket; retry that "
        f"job (POST /api/v1/jobs/{blocking.id}/retry) instead of posting a second note.",
        "retry_failed_job",
        blocking.id,
    )


def ticket_conflict(holder: WritebackJob) -> Conflict:
    """Why a session's ticket or connection cannot change while `holder` exists, naming it."""
    if holder.in_flight:
        return JobInFlight(holder.id)
    return Conflict(
        f"Job {holder.id} may have posted its note to ticket {holder.psa_ticket_id}; the "
        "session stays linked to that ticket.",
        "ticket_locked",
        holder.id,
    )


class TransitionRefused(Exception):
    """A transition the job's current state does not allow (a stale or duplicate message)."""


@dataclass(frozen=True)
class StepFailure:
    """A step's failed attempt, classified once where it was understood."""

    code: str
    message: str
    failure: Failure
    attempts: int = 1  # attempts at the PSA or the model it stands for
    retry_after: float | None = None  # the PSA's or the model's own word, honoured exactly


@dataclass
class WritebackJob:
    """One writeback, and the only place its life is decided.

    Every change is a method below; each bumps `version`, and the repository writes the change
    with `WHERE version = <the version it was loaded at>`, so two writers can never both win.
    At most one broker message is outstanding per job (`message_id`); a job with none is held
    in the database (waiting for admission or for `due_at`) and released by the scheduler.
    Times are the database's (`UnitOfWork.now`): a host's clock may be off, the database's is
    the one every process shares.
    """

    account_id: int
    session_id: int
    kind: JobKind
    tenant: str
    created_at: datetime
    updated_at: datetime
    # The ticket the job writes to, as its session named it when the job was created: a job
    # never follows a later change of the session (that is refused while it may write).
    psa_connection_id: int | None = None
    psa_ticket_id: str | None = None
    markdown: str | None = None
    state: JobState = JobState.QUEUED
    step: Step = Step.DRAFT
    attempts: int = 0  # failed attempts of the current step (PSA, network or model answers)
    outcome: str | None = None
    external_id: str | None = None
    target_status_id: int | None = None
    verified_status_id: int | None = None
    verified_status_name: str | None = None
    status_transition_skipped_reason: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    post_started_at: datetime | None = None  # a note may exist from here on
    message_id: str | None = None  # the one outstanding broker message, if any
    sent_at: datetime | None = None  # when the broker took that message (None: not yet known)
    lease_until: datetime | None = None  # a running step's lease, renewed by its heartbeat
    due_at: datetime | None = None  # a held job may be released from then on
    redeliveries: int = 0  # deliveries recovered after a worker or the broker lost them
    duplicate_of: str | None = None  # a second close of its session found at an upgrade
    version: int = 0
    finished_at: datetime | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    loaded_version: int = field(default=0, repr=False, compare=False)

    @property
    def note_marker(self) -> str:
        """A short reference appended to the posted note: how a retry finds its own note."""
        return f"psa-writeback ref {self.id.replace('-', '')[:16]}"

    @property
    def has_ticket(self) -> bool:
        return self.psa_ticket_id is not None

    @property
    def error(self) -> dict[str, str] | None:
        if self.error_code is None:
            return None
        return {"code": self.error_code, "message": self.error_message or ""}

    @property
    def in_flight(self) -> bool:
        return self.state in IN_FLIGHT_STATES

    @property
    def held(self) -> bool:
        """Waiting in the database: no message outstanding, nobody running it."""
        return self.state in WAITING_STATES and self.message_id is None

    @property
    def outcome_name(self) -> str:
        closed_as = str(SESSION_STATUS_BY_KIND[self.kind])
        return closed_as if self.has_ticket else f"{closed_as}_local"

    def _touch(self, now: datetime) -> None:
        self.version += 1
        self.updated_at = now

    def _require(self, allowed: bool, what: str) -> None:
        if not allowed:
            raise TransitionRefused(f"job {self.id} is {self.state} at {self.step}: cannot {what}")

    def _require_owner(self, message_id: str, what: str) -> None:
        self._require(self.state is JobState.RUNNING and self.message_id == message_id, what)

    def _send(self, message_id: str | None) -> None:
        self.message_id, self.sent_at, self.lease_until = message_id, None, None

    def _hold(self, due: datetime) -> None:
        self._send(None)
        self.due_at = due

    # The broker's side: admission, pick-up, loss

    def admit(self, message_id: str, now: datetime) -> None:
        """Hand a held job to the broker under `message_id`."""
        self._require(self.held, "admit")
        self._send(message_id)
        self.due_at = None
        self._touch(now)

    def claim(self, message_id: str, lease: float, now: datetime) -> None:
        """A worker picked up the outstanding message: the pick-up acknowledges it."""
        self._require(self.state in WAITING_STATES and self.message_id == message_id, "claim")
        self.state, self.lease_until = JobState.RUNNING, now + timedelta(seconds=lease)
        self._touch(now)

    def confirm_write(self, owner: str, hold: float, posting: bool, now: datetime) -> None:
        """Right before a write to the PSA: the step still owns the job, and its lease now
        covers the whole write (`hold` seconds). The repository saves this only while the lease
        has not run out by the database's clock. A note may exist from the first such write."""
        self._require_owner(owner, "write")
        self.lease_until = max(self.lease_until or now, now + timedelta(seconds=hold))
        if posting and self.post_started_at is None:
            self.post_started_at = now
        self._touch(now)

    def release(self, message_id: str, now: datetime) -> None:
        """Sending `message_id` failed (broker down): hold the job for the scheduler again."""
        self._require(self.state in WAITING_STATES and self.message_id == message_id, "release")
        self._hold(now)
        self._touch(now)

    def recover(
        self, message_id: str, now: datetime, *, counted: bool, policy: RetryPolicy
    ) -> bool:
        """Its delivery was lost (the worker's lease ran out, or the broker lost the message):
        the same step runs again under `message_id`. A step that may have a note POST in flight
        is held until that POST is surely stored, and then looks for the note before posting.
        `counted`: the loss is proven, and counts towards delivery_lost. Returns whether
        `message_id` is to be sent now."""
        self._require(self.in_flight, "recover")
        in_flight_post = (
            self.state is JobState.RUNNING
            and self.step is Step.POST_NOTE
            and self.post_started_at is not None
        )
        stored_by = (self.lease_until or now) + timedelta(seconds=policy.look_after_lease)
        self.state = JobState.QUEUED if self.state is JobState.RUNNING else self.state
        self.redeliveries += counted
        if in_flight_post and stored_by > now:
            self._hold(stored_by)
        else:
            self._send(message_id)
            self.due_at = None
        self._touch(now)
        return self.message_id is not None

    # A step's result: what it found out, and where the job goes next

    def _advance(self, owner: str, next_step: Step, message_id: str, now: datetime) -> None:
        self._require_owner(owner, f"record {self.step}")
        self.step, self.state, self.attempts = next_step, JobState.QUEUED, 0
        self._send(message_id)
        self.due_at = None
        self.error_code = self.error_message = None
        self._touch(now)

    def drafted(self, owner: str, markdown: str, message_id: str, now: datetime) -> None:
        self._require_owner(owner, "record the draft")
        self.markdown = markdown
        self._advance(owner, Step.POST_NOTE if self.has_ticket else Step.FINALIZE, message_id, now)

    def note_posted(
        self,
        owner: str,
        note_id: str,
        target_status_id: int | None,
        skipped_reason: str | None,
        message_id: str,
        now: datetime,
    ) -> None:
        self._require_owner(owner, "record the note")
        self.external_id = note_id
        self.target_status_id, self.status_transition_skipped_reason = (
            target_status_id,
            skipped_reason,
        )
        self._advance(owner, Step.TRANSITION_STATUS, message_id, now)

    def status_changed(self, owner: str, message_id: str, now: datetime) -> None:
        """The status change was sent, or was not needed; a skipped target has nothing to
        verify."""
        next_step = Step.VERIFY if self.target_status_id is not None else Step.FINALIZE
        self._advance(owner, next_step, message_id, now)

    def verified(
        self,
        owner: str,
        status_id: int | None,
        status_name: str | None,
        message_id: str,
        now: datetime,
    ) -> None:
        self._require_owner(owner, "record the verification")
        self.verified_status_id, self.verified_status_name = status_id, status_name
        self._advance(owner, Step.FINALIZE, message_id, now)

    def finalized(self, owner: str, now: datetime) -> None:
        """The session is closed in the same transaction: the job succeeded."""
        self._require_owner(owner, "succeed")
        self.state, self.step, self.outcome = JobState.SUCCEEDED, Step.DONE, self.outcome_name
        self.error_code = self.error_message = None
        self._end(now)

    # Waits and failures

    def wait(self, owner: str, seconds: float, now: datetime) -> None:
        """Run this step again in `seconds`, held in the database until then; no attempt."""
        self._require_owner(owner, "wait")
        self.state = JobState.RETRYING
        self._hold(now + timedelta(seconds=seconds))
        self._touch(now)

    def step_failed(
        self, owner: str, failure: StepFailure, policy: RetryPolicy, now: datetime
    ) -> float | None:
        """Count the failed attempt (the one place attempts are counted), then retry after a
        backoff, or fail: at once for a permanent failure, or once attempts are spent. Returns
        the delay before the retry, or None when the job failed."""
        self._require_owner(owner, "record a failure")
        self.attempts += failure.attempts
        self.error_code, self.error_message = failure.code, failure.message
        if failure.failure is Failure.PERMANENT:
            self._fail(now)
            return None
        if self.attempts >= policy.max_attempts:
            self.error_message = f"{failure.message} (gave up after {self.attempts} attempts)"
            self._fail(now)
            return None
        delay = policy.backoff(self.attempts, failure.retry_after)
        if failure.failure is Failure.AMBIGUOUS:  # let a possibly stored write land first
            delay = max(delay, policy.post_settle)
        self.state = JobState.RETRYING
        self._hold(now + timedelta(seconds=delay))
        self._touch(now)
        return delay

    def fail(self, code: str, message: str, now: datetime) -> None:
        """End failed, decided from outside a step (the sweeper: its delivery kept getting
        lost)."""
        self._require(self.in_flight, "fail")
        self.error_code, self.error_message = code, message
        self._fail(now)

    def _fail(self, now: datetime) -> None:
        self.state = JobState.FAILED
        self._end(now)

    def _end(self, now: datetime) -> None:
        self._send(None)
        self.due_at = None
        self.finished_at = now
        self._touch(now)

    def requeue(self, now: datetime) -> Step:
        """Re-run a failed job from where it stopped; a failed verification re-applies the
        status first. A posted note keeps its id: it is never posted again."""
        self._require(self.state is JobState.FAILED and self.duplicate_of is None, "retry")
        self.step = Step.TRANSITION_STATUS if self.step is Step.VERIFY else self.step
        self.state, self.attempts, self.redeliveries = JobState.QUEUED, 0, 0
        self.error_code = self.error_message = self.finished_at = None
        self._hold(now)
        self._touch(now)
        return self.step


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a listing or a bulk re-post looks at. Empty tuples mean any."""

    account_id: int | None = None
    states: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    created_before: datetime | None = None
    connection_id: int | None = None


@dataclass(frozen=True)
class JobCursor:
    """Keyset position in the newest-first job order: stable under inserts, O(page) to read."""

    created_at: datetime
    id: str


@dataclass
class JobEvent:
    job_id: str
    at: datetime
    step: str
    event: str
    detail: dict[str, Any] = field(default_factory=dict)
    id: int | None = None


class StepLoad(NamedTuple):
    """What a step's claim reads at once: the job, its session (None: deleted meanwhile), the
    job's PSA connection (None: a local job, or the connection is gone) and the database's
    time of the read."""

    job: WritebackJob
    session: AiSession | None
    connection: PsaConnection | None
    now: datetime
