"""What a poller needs to know about a job without reading it: its version (the ETag), whose
it is, and when to ask again. Computed in one place so the worker that publishes a version and
the API that answers from the database always agree."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from writeback.domain.model import IN_FLIGHT_STATES, JobState, WritebackJob

# How soon a frontend should poll an in-flight job again: a running step usually ends within a
# second; a retrying job waits its backoff first.
POLL_AFTER_MS = {JobState.QUEUED: 1000, JobState.RUNNING: 1000, JobState.RETRYING: 2000}


@dataclass(frozen=True)
class JobVersion:
    account_id: int
    etag: str  # quoted, as sent in the ETag header
    poll_after_ms: int | None  # None once the job is final
    # The job as the API shows it, when the feed keeps it: a poll then needs no read.
    body: Mapping[str, Any] | None = None

    @property
    def final(self) -> bool:
        return self.poll_after_ms is None


def job_etag(job: WritebackJob) -> str:
    """A strong ETag over every field the API shows of the job: any change shows."""
    fields = (
        job.id,
        job.state,
        job.step,
        job.attempts,
        job.outcome,
        job.external_id,
        job.verified_status_id,
        job.verified_status_name,
        job.status_transition_skipped_reason,
        job.error_code,
        job.error_message,
        _instant(job.updated_at),
        _instant(job.finished_at) if job.finished_at else None,
    )
    # str() of each: the worker holds enums and aware datetimes, a read may give plain strings.
    text = "\x1f".join(str(field) for field in fields)
    digest = hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
    return f'"{digest}"'


def _instant(moment: datetime) -> str:
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.isoformat()


def poll_after_ms(job: WritebackJob) -> int | None:
    state = JobState(job.state)
    return POLL_AFTER_MS[state] if state in IN_FLIGHT_STATES else None


def version_of(job: WritebackJob) -> JobVersion:
    return JobVersion(job.account_id, job_etag(job), poll_after_ms(job))
