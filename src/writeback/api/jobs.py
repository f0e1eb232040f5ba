from __future__ import annotations

from flask import Blueprint

from writeback.api.context import authenticate_request, container, principal
from writeback.api.schemas import event_out, job_out
from writeback.domain import services

bp = Blueprint("jobs", __name__, url_prefix="/api/v1/jobs")
bp.before_request(authenticate_request)


@bp.get("/<job_id>")
def show(job_id: str) -> dict[str, object]:
    return job_out(services.get_job(principal(), job_id, uow=container().uow))


@bp.get("/<job_id>/events")
def events(job_id: str) -> dict[str, object]:
    found = services.job_events(principal(), job_id, uow=container().uow)
    return {"job_id": job_id, "events": [event_out(e) for e in found]}
