"""The job as the API shows it: one pydantic model for the API's answer (which adds the job's
links), its OpenAPI schema and the copy the job feed keeps in Redis, so both answers agree."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

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


class JobView(Out):
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
    def of(cls, j: WritebackJob, **links: str) -> Self:
        shown = {name: getattr(j, name) for name in JobView.model_fields if hasattr(j, name)}
        return cls.model_validate({**shown, "poll_after_ms": poll_after_ms(j), **links})
