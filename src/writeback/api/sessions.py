from __future__ import annotations

from flask import Blueprint

from writeback.api.context import authenticate_request, body, container, principal
from writeback.api.schemas import SessionIn, SessionPatch, WritebackIn, session_out
from writeback.domain.model import JobKind

bp = Blueprint("ai_sessions", __name__, url_prefix="/api/v1/ai-sessions")
bp.before_request(authenticate_request)

# URL segment -> the kind of writeback it starts
WRITEBACK_ROUTES = {"resolution-note": JobKind.RESOLVE, "escalation-package": JobKind.ESCALATE}


@bp.post("")
def create() -> tuple[dict[str, object], int]:
    data = body(SessionIn)
    session = container().sessions.create(
        principal(),
        session_type=data.session_type,
        intake_type=data.intake_type,
        intake_content=data.intake_content,
        conversation_messages=[m.model_dump() for m in data.conversation_messages],
        psa_connection_id=data.psa_connection_id,
        psa_ticket_id=data.psa_ticket_id,
    )
    return session_out(session), 201


@bp.get("/<int:session_id>")
def show(session_id: int) -> dict[str, object]:
    return session_out(container().sessions.get(principal(), session_id))


@bp.patch("/<int:session_id>")
def update(session_id: int) -> dict[str, object]:
    """Change the session as the chat goes on: a new state_version, and new drafts."""
    data = body(SessionPatch)
    changes = {name: getattr(data, name) for name in data.model_fields_set}
    if "conversation_messages" in changes:
        changes["conversation_messages"] = [m.model_dump() for m in data.conversation_messages]
    session = container().sessions.update(principal(), session_id, changes)
    return session_out(session)


@bp.post('/<int:session_id>/<any("resolution-note", "escalation-package"):document>/post')
def post_writeback(session_id: int, document: str) -> tuple[dict[str, object], int, dict[str, str]]:
    data = body(WritebackIn)
    job = container().jobs.request_writeback(
        principal(), session_id, WRITEBACK_ROUTES[document], data.markdown
    )
    status_url = f"/api/v1/jobs/{job.id}"
    return {"job_id": job.id, "status_url": status_url}, 202, {"Location": status_url}


@bp.post('/<int:session_id>/<any("resolution-note", "escalation-package"):document>/preview')
def preview(session_id: int, document: str) -> dict[str, object]:
    kind = WRITEBACK_ROUTES[document]
    draft, cached = container().jobs.preview(principal(), session_id, kind)
    return {
        "kind": str(kind),
        "markdown": draft.markdown,
        "cached": cached,
        "drafter": draft.drafter,
        "usage": draft.usage,
    }
