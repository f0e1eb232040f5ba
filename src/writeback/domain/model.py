"""Entities and value objects of the writeback. Plain classes: the database adapter maps them."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from writeback.domain.errors import AlreadyClosed, Conflict, JobInFlight


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


def tenant_of(session: AiSession) -> str:
    """Whose budget and admission slots a job uses: its PSA connection, or its account for
    a session with no ticket (no PSA involved)."""
    if session.has_ticket:
        return f"psa:{session.psa_connection_id}"
    return f"local:{session.account_id}"


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


class TransitionRefused(Exception):
    """A transition the job's current state does not allow (a stale or duplicate message)."""


@dataclass
class WritebackJob:
    """One writeback, and the only place its life is decided.

    Every change is a method below; each bumps `version`, and the repository writes the change
    with `WHERE version = <the version it was loaded at>`, so two writers can never both win.
    At most one broker message is outstanding per job (`message_id`); a job with none is held
    in the database (waiting for admission or for `due_at`) and released by the scheduler.
    """

    account_id: int
    session_id: int
    kind: JobKind
    tenant: str
    created_at: datetime
    updated_at: datetime
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
    post_started_at: datetime | None = None  # intent: a note may exist from here on
    message_id: str | None = None  # the one outstanding broker message, if any
    lease_until: datetime | None = None  # a running step's lease, renewed by its heartbeat
    due_at: datetime | None = None  # a held job may be released from then on
    redeliveries: int = 0  # deliveries recovered after a worker or the broker lost them
    version: int = 0
    finished_at: datetime | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    loaded_version: int = field(default=0, repr=False, compare=False)

    @property
    def note_marker(self) -> str:
        """A short reference appended to the posted note: how a retry finds its own note."""
        return f"psa-writeback ref {self.id.replace('-', '')[:16]}"

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

    def _touch(self, now: datetime) -> None:
        self.version += 1
        self.updated_at = now

    def _require(self, allowed: bool, what: str) -> None:
        if not allowed:
            raise TransitionRefused(f"job {self.id} is {self.state} at {self.step}: cannot {what}")

    def admit(self, message_id: str, now: datetime) -> None:
        """Hand a held job to the broker under `message_id`."""
        self._require(self.held, "admit")
        self.message_id, self.due_at = message_id, None
        self._touch(now)

    def claim(self, message_id: str, lease: float, now: datetime) -> None:
        """A worker picked up the outstanding message: the pick-up acknowledges it."""
        self._require(self.state in WAITING_STATES and self.message_id == message_id, "claim")
        self.state, self.lease_until = JobState.RUNNING, now + timedelta(seconds=lease)
        if self.step is Step.POST_NOTE and self.post_started_at is None:
            self.post_started_at = now  # from here on a note may exist: look before posting
        self._touch(now)

    def _require_owner(self, message_id: str, what: str) -> None:
        self._require(self.state is JobState.RUNNING and self.message_id == message_id, what)

    def advance(self, owner: str, next_step: Step, message_id: str, now: datetime) -> None:
        """The step is done; the next one goes to the broker at once (the job keeps its slot)."""
        self._require_owner(owner, "advance")
        self.step, self.state, self.attempts = next_step, JobState.QUEUED, 0
        self.message_id, self.lease_until, self.due_at = message_id, None, None
        self.error_code = self.error_message = None
        self._touch(now)

    def schedule(
        self, owner: str, delay: float, now: datetime, *, error: tuple[str, str] | None
    ) -> None:
        """Run this step again in `delay` seconds, held in the database until then. `error`
        (code, message) is a failed attempt; None is a wait that is no attempt (the budget)."""
        self._require_owner(owner, "schedule a retry")
        self.state, self.message_id, self.lease_until = JobState.RETRYING, None, None
        self.due_at = now + timedelta(seconds=delay)
        if error is not None:
            self.attempts += 1
            self.error_code, self.error_message = error
        self._touch(now)

    def fail(self, owner: str | None, code: str, message: str, now: datetime) -> None:
        """End failed. `owner` None: decided from outside a step (the sweeper)."""
        if owner is None:
            self._require(self.in_flight, "fail")
        else:
            self._require_owner(owner, "fail")
        self.state, self.error_code, self.error_message = JobState.FAILED, code, message
        self.message_id = self.lease_until = self.due_at = None
        self.finished_at = now
        self._touch(now)

    def succeed(self, owner: str, outcome: str, now: datetime) -> None:
        self._require_owner(owner, "succeed")
        self.state, self.step, self.outcome = JobState.SUCCEEDED, Step.DONE, outcome
        self.error_code = self.error_message = None
        self.message_id = self.lease_until = self.due_at = None
        self.finished_at = now
        self._touch(now)

    def recover(self, message_id: str, now: datetime, *, counted: bool = True) -> None:
        """Its delivery was lost (the worker's lease ran out, or the broker lost the message):
        the same step goes to the broker again under a new message id. `counted`: the loss is
        proven, and counts towards delivery_lost."""
        self._require(self.in_flight, "recover")
        self.state = JobState.QUEUED if self.state is JobState.RUNNING else self.state
        self.message_id, self.lease_until, self.due_at = message_id, None, None
        self.redeliveries += counted
        self._touch(now)

    def release(self, message_id: str, now: datetime) -> None:
        """Sending `message_id` failed (broker down): hold the job for the scheduler again."""
        self._require(self.state in WAITING_STATES and self.message_id == message_id, "release")
        self.message_id, self.due_at = None, now
        self._touch(now)

    def requeue(self, now: datetime) -> Step:
        """Re-run a failed job from where it stopped; a failed verification re-applies the
        status first. A posted note keeps its id: it is never posted again."""
        self._require(self.state is JobState.FAILED, "retry")
        self.step = Step.TRANSITION_STATUS if self.step is Step.VERIFY else self.step
        self.state, self.attempts, self.redeliveries = JobState.QUEUED, 0, 0
        self.error_code = self.error_message = self.finished_at = None
        self.message_id, self.due_at = None, now
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
    """What a step's claim reads at once: the job, its session (None: deleted meanwhile) and
    the session's PSA connection (None: a local session, or the connection is gone)."""

    job: WritebackJob
    session: AiSession | None
    connection: PsaConnection | None
