from __future__ import annotations

from flask import Blueprint, request

from writeback.api.context import authenticate_request, container, principal
from writeback.api.schemas import JobListQuery, encode_cursor, event_out, job_out
from writeback.domain.model import JobFilter, utcnow

bp = Blueprint("jobs", __name__, url_prefix="/api/v1/jobs")
bp.before_request(authenticate_request)


@bp.get("")
def index() -> dict[str, object]:
    """`?state=failed&kind=escalate&older_than=30m&limit=50&cursor=...`, newest first."""
    query = JobListQuery.model_validate(
        {
            key: request.args.getlist(key) if key in ("state", "kind") else value
            for key, value in request.args.items()
        }
    )
    where = JobFilter(
        states=tuple(query.state),
        kinds=tuple(query.kind),
        created_before=utcnow() - query.older_than if query.older_than else None,
    )
    page, next_cursor = container().jobs.list(principal(), where, query.cursor, query.limit)
    return {
        "items": [job_out(job) for job in page],
        "next_cursor": encode_cursor(next_cursor) if next_cursor else None,
    }


@bp.get("/<job_id>")
def show(job_id: str) -> dict[str, object]:
    return job_out(container().jobs.get(principal(), job_id))


@bp.get("/<job_id>/events")
def events(job_id: str) -> dict[str, object]:
    found = container().jobs.events(principal(), job_id)
    return {"job_id": job_id, "events": [event_out(e) for e in found]}


@bp.post("/<job_id>/retry")
def retry(job_id: str) -> tuple[dict[str, object], int]:
    """Re-run a failed job from the step where it stopped."""
    job = container().jobs.retry(job_id, principal().account_id)
    return {"job_id": job.id, "status_url": f"/api/v1/jobs/{job.id}"}, 202
