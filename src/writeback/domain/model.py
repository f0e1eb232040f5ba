"""Entities and value objects of the writeback. Plain classes: the database adapter maps them."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


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


IN_FLIGHT_STATES = (JobState.QUEUED, JobState.RUNNING, JobState.RETRYING)


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
    account_id: int
    cw_resolved_status_id: int | None = None
    cw_escalated_status_id: int | None = None

    def target_status_id(self, kind: JobKind) -> int | None:
        if kind is JobKind.RESOLVE:
            return self.cw_resolved_status_id
        return self.cw_escalated_status_id


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

    def close(self, kind: JobKind, markdown: str, now: datetime) -> None:
        """Record the posted document and flip the status (the end of a writeback)."""
        self.status = SESSION_STATUS_BY_KIND[kind]
        if kind is JobKind.RESOLVE:
            self.resolution_note_markdown = markdown
            self.resolved_at = now
        else:
            self.escalation_package_markdown = markdown
            self.escalated_at = now
        self.state_version += 1
        self.updated_at = now


@dataclass
class WritebackJob:
    account_id: int
    session_id: int
    kind: str
    created_at: datetime
    updated_at: datetime
    due_at: datetime | None
    markdown: str | None = None
    state: str = JobState.QUEUED
    step: str = Step.DRAFT
    attempts: int = 0
    outcome: str | None = None
    external_id: str | None = None
    target_status_id: int | None = None
    verified_status_id: int | None = None
    verified_status_name: str | None = None
    status_transition_skipped_reason: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    post_started_at: datetime | None = None
    delivery_id: str | None = None
    redeliveries: int = 0
    finished_at: datetime | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def note_marker(self) -> str:
        """A short reference appended to the posted note: how a retry finds its own note."""
        return f"psa-writeback ref {self.id.replace('-', '')[:16]}"

    @property
    def error(self) -> dict[str, str] | None:
        if self.error_code is None:
            return None
        return {"code": self.error_code, "message": self.error_message or ""}


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
