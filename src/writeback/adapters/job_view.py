"""The job as the API shows it: one pydantic model for the API's answer, its OpenAPI schema
and the copy the job feed keeps in Redis, so both answers are the same bytes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from writeback.domain.job_versions import poll_after_ms
from writeback.domain.model import WritebackJob


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class JobError(Out):
    code: str
    message: str


JobStateName = Literal["queued", "running", "retrying", "succeeded", "failed"]


class Job(Out):
    id: str
    kind: Literal["resolve", "escalate"]
    session_id: int
    state: JobStateName
    step: str
    attempts: int
    outcome: str | None
    external_id: str | None
    verified_status_id: int | None
    verified_status_name: str | None
    status_transition_skipped_reason: str | None
    error: JobError | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    poll_after_ms: int | None = Field(
        description="In-flight jobs: poll again after this long (also in Retry-After)."
    )

    @classmethod
    def of(cls, j: WritebackJob) -> Job:
        return cls.model_validate(
            {
                **{name: getattr(j, name) for name in cls.model_fields if name != "poll_after_ms"},
                "poll_after_ms": poll_after_ms(j),
            }
        )
