"""Request schemas (pydantic: per-field 422 errors) and response shapes."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from writeback.domain.durations import parse_duration
from writeback.domain.model import (
    AccountSettings,
    AiSession,
    Board,
    BoardStatus,
    JobCursor,
    JobEvent,
    PsaConnection,
    StatusMapping,
    WritebackJob,
)

Text200 = Field(min_length=1, max_length=200)
MAX_MARKDOWN = 100_000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ConnectionIn(Strict):
    provider: str = Field(min_length=1, max_length=40)
    site_url: str = Field(min_length=1, max_length=500)
    company_id: str = Text200
    credentials: dict[str, str] = Field(max_length=20)
    # Provider settings (accept_version, publish labels, auth_url, ...), validated per provider.
    options: dict[str, Any] | None = Field(default=None, max_length=20)

    @field_validator("credentials")
    @classmethod
    def _bounded(cls, value: dict[str, str]) -> dict[str, str]:
        if any(len(k) > 100 or len(v) > 4096 for k, v in value.items()):
            raise ValueError("credential keys and values must be short strings")
        return value


class StatusMappingIn(Strict):
    board_id: int | None = Field(default=None, gt=0)  # null: any other board
    kind: Literal["resolve", "escalate"]
    status: Annotated[int, Field(gt=0)] | Annotated[str, Field(min_length=1, max_length=200)]


class StatusMapIn(Strict):
    mappings: list[StatusMappingIn] = Field(max_length=500)


class SettingsIn(Strict):
    cw_resolved_status_id: int | None = Field(default=None, gt=0)
    cw_escalated_status_id: int | None = Field(default=None, gt=0)


def _ticket_as_text(value: Any) -> Any:
    """PSA ticket ids are numbers in some PSAs and strings in others: keep them as text."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


TicketId = Annotated[str, BeforeValidator(_ticket_as_text), Field(min_length=1, max_length=64)]


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["user", "assistant"]
    content: str = Field(max_length=50_000)


class SessionIn(BaseModel):
    # Clients send extra session fields the writeback does not use; they are ignored.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    session_type: str = Field(default="chat", min_length=1, max_length=40)
    intake_type: str = Field(default="free_text", min_length=1, max_length=40)
    intake_content: dict[str, Any] = Field(default_factory=dict)
    conversation_messages: list[Message] = Field(default_factory=list, max_length=2000)
    psa_connection_id: int | None = Field(default=None, gt=0)
    psa_ticket_id: TicketId | None = None


class SessionPatch(Strict):
    """Only the fields sent change."""

    intake_content: dict[str, Any] = Field(default_factory=dict)
    conversation_messages: list[Message] = Field(default_factory=list, max_length=2000)
    psa_connection_id: int | None = Field(default=None, gt=0)
    psa_ticket_id: TicketId | None = None


class WritebackIn(Strict):
    markdown: str | None = Field(default=None, min_length=1, max_length=MAX_MARKDOWN)


def encode_cursor(cursor: JobCursor) -> str:
    raw = json.dumps([cursor.created_at.isoformat(), cursor.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> JobCursor:
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return JobCursor(created_at=datetime.fromisoformat(created_at), id=str(job_id))
    except (ValueError, TypeError):
        raise ValueError("not a cursor this API returned") from None


class JobListQuery(Strict):
    state: list[Literal["queued", "running", "retrying", "succeeded", "failed"]] = Field(
        default_factory=list
    )
    kind: list[Literal["resolve", "escalate"]] = Field(default_factory=list)
    older_than: timedelta | None = None
    limit: int = Field(default=50, ge=1, le=200)
    cursor: JobCursor | None = None

    @field_validator("state", "kind", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [part for item in value for part in str(item).split(",") if part]
        return value

    @field_validator("older_than", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("cursor", mode="before")
    @classmethod
    def _cursor(cls, value: Any) -> Any:
        return decode_cursor(value) if isinstance(value, str) else value


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def connection_out(c: PsaConnection) -> dict[str, Any]:
    return {
        "id": c.id,
        "provider": c.provider,
        "site_url": c.site_url,
        "company_id": c.company_id,
        "options": c.options,
        "is_active": c.is_active,
        "created_at": _iso(c.created_at),
    }


def status_map_out(mappings: Sequence[StatusMapping]) -> dict[str, Any]:
    return {
        "mappings": [
            {
                "board_id": m.board_id,
                "kind": m.kind,
                "status_id": m.status_id,
                "status_name": m.status_name,
            }
            for m in mappings
        ]
    }


def board_out(board: Board) -> dict[str, Any]:
    return {"id": board.id, "name": board.name}


def board_status_out(status: BoardStatus) -> dict[str, Any]:
    return {
        "id": status.id,
        "name": status.name,
        "board_id": status.board_id,
        "inactive": status.inactive,
        "closedStatus": status.closed,
        "escalationStatus": status.escalation,
    }


def settings_out(s: AccountSettings) -> dict[str, Any]:
    return {
        "cw_resolved_status_id": s.cw_resolved_status_id,
        "cw_escalated_status_id": s.cw_escalated_status_id,
    }


def session_out(s: AiSession) -> dict[str, Any]:
    return {
        "id": s.id,
        "session_type": s.session_type,
        "intake_type": s.intake_type,
        "intake_content": s.intake_content,
        "conversation_messages": s.conversation_messages,
        "status": s.status,
        "state_version": s.state_version,
        "psa_connection_id": s.psa_connection_id,
        "psa_ticket_id": s.psa_ticket_id,
        "resolution_note_markdown": s.resolution_note_markdown,
        "escalation_package_markdown": s.escalation_package_markdown,
        "resolved_at": _iso(s.resolved_at),
        "escalated_at": _iso(s.escalated_at),
        "created_at": _iso(s.created_at),
        "updated_at": _iso(s.updated_at),
    }


def job_out(j: WritebackJob) -> dict[str, Any]:
    return {
        "id": j.id,
        "kind": j.kind,
        "session_id": j.session_id,
        "state": j.state,
        "step": j.step,
        "attempts": j.attempts,
        "outcome": j.outcome,
        "external_id": j.external_id,
        "verified_status_id": j.verified_status_id,
        "verified_status_name": j.verified_status_name,
        "status_transition_skipped_reason": j.status_transition_skipped_reason,
        "error": j.error,
        "created_at": _iso(j.created_at),
        "updated_at": _iso(j.updated_at),
        "finished_at": _iso(j.finished_at),
    }


def event_out(e: JobEvent) -> dict[str, Any]:
    return {"at": _iso(e.at), "step": e.step, "event": e.event, "detail": e.detail}
