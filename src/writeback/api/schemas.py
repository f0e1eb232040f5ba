"""Request schemas (pydantic: per-field 422 errors). Responses are in api/responses.py."""

from __future__ import annotations

import base64
import json
import math
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
)

from writeback.domain.durations import parse_duration
from writeback.domain.errors import InvalidInput
from writeback.domain.model import (
    JobCursor,
)

Text200 = Field(min_length=1, max_length=200)
MAX_MARKDOWN = 100_000
MAX_ID = 2**31 - 1  # ids and PSA status/board ids live in 32-bit integer columns
MAX_AGE = timedelta(days=3650)


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
    board_id: int | None = Field(default=None, gt=0, le=MAX_ID)  # null: any other board
    kind: Literal["resolve", "escalate"]
    status: (
        Annotated[int, Field(gt=0, le=MAX_ID)] | Annotated[str, Field(min_length=1, max_length=200)]
    )


class StatusMapIn(Strict):
    mappings: list[StatusMappingIn] = Field(max_length=500)


StatusId = Annotated[int, Field(gt=0, le=MAX_ID)]
# The settings' names from when they were ConnectWise's alone: accepted for one release.
DEPRECATED_SETTINGS = {
    "cw_resolved_status_id": "resolved_status_id",
    "cw_escalated_status_id": "escalated_status_id",
}


def renamed_to(name: str) -> str:
    """The deprecation note of a field's old name."""
    return f"Use {name}; removed in the next release."


class SettingsIn(Strict):
    resolved_status_id: StatusId | None = None
    escalated_status_id: StatusId | None = None
    cw_resolved_status_id: StatusId | None = Field(
        default=None, deprecated=renamed_to("resolved_status_id")
    )
    cw_escalated_status_id: StatusId | None = Field(
        default=None, deprecated=renamed_to("escalated_status_id")
    )

    def changes(self) -> dict[str, int | None]:
        """The settings sent, by their current names: only those change, and an explicit null
        clears one. A setting sent under both names must have one value."""
        sent: dict[str, int | None] = self.model_dump(include=self.model_fields_set)
        for old, new in DEPRECATED_SETTINGS.items():
            if old in sent:
                value = sent.pop(old)
                if sent.setdefault(new, value) != value:
                    raise InvalidInput(old, f"{old} is the old name of {new}: send one value")
        return sent


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
    psa_connection_id: int | None = Field(default=None, gt=0, le=MAX_ID)
    psa_ticket_id: TicketId | None = None


class SessionPatch(Strict):
    """Only the fields sent change."""

    intake_content: dict[str, Any] = Field(default_factory=dict)
    conversation_messages: list[Message] = Field(default_factory=list, max_length=2000)
    psa_connection_id: int | None = Field(default=None, gt=0, le=MAX_ID)
    psa_ticket_id: TicketId | None = None


class WritebackIn(Strict):
    """`{}` posts the (cached) draft the preview showed; `markdown` posts the technician's text."""

    markdown: str | None = Field(default=None, min_length=1, max_length=MAX_MARKDOWN)


def encode_cursor(cursor: JobCursor) -> str:
    raw = json.dumps([cursor.created_at.isoformat(), cursor.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> JobCursor:
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None:  # every cursor we issue carries its offset
            raise ValueError("naive datetime")
        return JobCursor(created_at=moment, id=str(uuid.UUID(job_id)))
    except (ValueError, TypeError, AttributeError, RecursionError):
        raise ValueError("not a cursor this API returned") from None


class JobListQuery(Strict):
    state: list[Literal["queued", "running", "retrying", "succeeded", "failed"]] = Field(
        default_factory=list
    )
    kind: list[Literal["resolve", "escalate"]] = Field(default_factory=list)
    # Documented as text (what is sent), nullable as their default is.
    older_than: Annotated[
        timedelta | None,
        WithJsonSchema(
            {"type": ["string", "null"], "pattern": r"^\d+[smhd]?$", "examples": ["30m"]}
        ),
    ] = Field(default=None, le=MAX_AGE)
    limit: int = Field(default=50, ge=1, le=200)
    cursor: Annotated[
        JobCursor | None,
        WithJsonSchema({"type": ["string", "null"], "description": "next_cursor"}),
    ] = None

    @field_validator("state", "kind", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [part for item in value for part in str(item).split(",") if part]
        return value

    @field_validator("older_than", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return parse_duration(value)
        except OverflowError:
            raise ValueError("at most 3650d") from None

    @field_validator("cursor", mode="before")
    @classmethod
    def _cursor(cls, value: Any) -> Any:
        return decode_cursor(value) if isinstance(value, str) else value


def refuse_unstorable(data: Any, path: str = "") -> list[dict[str, str]]:
    """Fields a database cannot store as sent: NUL characters and lone surrogates in strings
    (keys included), and NaN/Infinity. Refused by name before any model sees them."""
    found: list[dict[str, str]] = []
    items: Any = ()
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    for key, value in items:
        field = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and not _storable(key):
            found.append({"field": field, "message": "NUL or lone surrogate in a key"})
        found.extend(refuse_unstorable(value, field))
    if isinstance(data, str) and not _storable(data):
        found.append({"field": path or "body", "message": "NUL or lone surrogate in a string"})
    if isinstance(data, float) and not math.isfinite(data):
        found.append({"field": path or "body", "message": "NaN and Infinity are not JSON"})
    return found


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
