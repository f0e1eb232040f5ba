"""Response models: what each route answers, validated as built and documented from the same
classes in the OpenAPI document. The job's own fields are in adapters/job_view.py: the job feed
keeps them in Redis, so a poll is answered without the database."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from writeback.adapters.job_view import JobView
from writeback.adapters.job_view import Out as Out
from writeback.api.schemas import renamed_to
from writeback.domain.model import (
    AccountSettings,
    AiSession,
    Board,
    BoardStatus,
    JobEvent,
    PsaConnection,
    StatusMapping,
)


class Connection(Out):
    id: int
    provider: str
    site_url: str
    company_id: str
    # Per-provider options as given (accept version, picklist labels, auth URL, ...).
    options: dict[str, Any] | None = None
    is_active: bool
    created_at: datetime

    @classmethod
    def of(cls, c: PsaConnection) -> Connection:
        return cls.model_validate(c)


class StatusMappingOut(Out):
    board_id: int | None
    kind: Literal["resolve", "escalate"]
    status_id: int | None
    status_name: str | None


class StatusMap(Out):
    mappings: list[StatusMappingOut]

    @classmethod
    def of(cls, mappings: list[StatusMapping]) -> StatusMap:
        return cls(mappings=[StatusMappingOut.model_validate(m) for m in mappings])


class BoardOut(Out):
    id: int | None
    name: str


class Boards(Out):
    boards: list[BoardOut]

    @classmethod
    def of(cls, boards: list[Board]) -> Boards:
        return cls(boards=[BoardOut.model_validate(b) for b in boards])


class BoardStatusOut(Out):
    id: int
    name: str
    board_id: int | None
    inactive: bool
    closed_status: bool
    escalation_status: str | None
    closedStatus: bool = Field(deprecated=renamed_to("closed_status"))
    escalationStatus: str | None = Field(deprecated=renamed_to("escalation_status"))

    @classmethod
    def of(cls, s: BoardStatus) -> BoardStatusOut:
        return cls(
            id=s.id,
            name=s.name,
            board_id=s.board_id,
            inactive=s.inactive,
            closed_status=s.closed,
            escalation_status=s.escalation,
            closedStatus=s.closed,
            escalationStatus=s.escalation,
        )


class BoardStatuses(Out):
    statuses: list[BoardStatusOut]

    @classmethod
    def of(cls, statuses: list[BoardStatus]) -> BoardStatuses:
        return cls(statuses=[BoardStatusOut.of(s) for s in statuses])


class ConnectionCheck(Out):
    ok: bool
    failed: str | None = Field(description="What is wrong: site_url, credentials, ...")
    message: str | None


class Settings(Out):
    resolved_status_id: int | None = Field(
        description="Where a resolve moves a ticket no status map entry applies to (any PSA)."
    )
    escalated_status_id: int | None = Field(
        description="Where an escalation moves a ticket no status map entry applies to."
    )
    cw_resolved_status_id: int | None = Field(deprecated=renamed_to("resolved_status_id"))
    cw_escalated_status_id: int | None = Field(deprecated=renamed_to("escalated_status_id"))

    @classmethod
    def of(cls, s: AccountSettings) -> Settings:
        return cls(
            resolved_status_id=s.resolved_status_id,
            escalated_status_id=s.escalated_status_id,
            cw_resolved_status_id=s.resolved_status_id,
            cw_escalated_status_id=s.escalated_status_id,
        )


class Session(Out):
    id: int
    session_type: str
    intake_type: str
    intake_content: dict[str, Any]
    conversation_messages: list[dict[str, Any]]
    status: Literal["active", "resolved", "escalated"]
    state_version: int
    psa_connection_id: int | None
    psa_ticket_id: str | None
    resolution_note_markdown: str | None
    escalation_package_markdown: str | None
    resolved_at: datetime | None
    escalated_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, s: AiSession) -> Session:
        return cls.model_validate(s)


class Preview(Out):
    kind: Literal["resolve", "escalate"]
    markdown: str
    cached: bool
    drafter: str
    usage: dict[str, int] | None


EVENTS_URL = Field(
    description="The job's live events (Server-Sent Events), for a browser's own EventSource: "
    "absolute, and authorised by a credential of its own for this one job, valid "
    "WRITEBACK_EVENTS_URL_MINUTES. Once it has expired the stream answers 401 "
    "events_url_expired: GET the job again (without If-None-Match) for a fresh one."
)


class Job(JobView):
    events_url: str = EVENTS_URL


class Accepted(Out):
    job_id: str
    status_url: str
    events_url: str = EVENTS_URL


class JobPage(Out):
    items: list[Job]
    next_cursor: str | None


class Event(Out):
    id: int | None = Field(description="Increasing per job: the SSE event id.")
    at: datetime
    step: str
    event: str
    detail: dict[str, Any]


class Events(Out):
    job_id: str
    events: list[Event]

    @classmethod
    def of(cls, job_id: str, events: list[JobEvent]) -> Events:
        return cls(job_id=job_id, events=[Event.model_validate(e) for e in events])


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the field at fault, e.g. mappings.0.kind.")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, served as application/problem+json."""

    type: str
    title: str
    status: int
    detail: str
    code: str = Field(description="Machine-readable, e.g. validation_error, job_in_flight.")
    errors: list[FieldError] | None = Field(default=None, description="422: each field.")
    job_id: str | None = Field(default=None, description="409 job_in_flight: the job.")
    status_url: str | None = None
    failed: str | None = Field(default=None, description="502: what the PSA refused.")
    checks: dict[str, str] | None = Field(default=None, description="/readyz: each check.")
