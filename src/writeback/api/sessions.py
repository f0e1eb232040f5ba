from __future__ import annotations

from flask import Blueprint

from writeback.api.context import authenticate_request, body, container, principal
from writeback.api.jobs import links
from writeback.api.openapi import documented
from writeback.api.responses import Accepted, Preview, Session
from writeback.api.schemas import MAX_ID, SessionIn, SessionPatch, WritebackIn
from writeback.domain.model import JobKind

bp = Blueprint("ai_sessions", __name__, url_prefix="/api/v1/ai-sessions")
bp.before_request(authenticate_request)

# URL segment -> the kind of writeback it starts
WRITEBACK_ROUTES = {"resolution-note": JobKind.RESOLVE, "escalation-package": JobKind.ESCALATE}
SESSION = f"/<int(min=1, max={MAX_ID}):session_id>"
DOCUMENT = '/<any("resolution-note", "escalation-package"):document>'
TAGS = ("sessions",)


@bp.post("")
@documented({201: Session}, json=SessionIn, tags=TAGS)
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
    return Session.of(session).body(), 201


@bp.get(SESSION)
@documented({200: Session}, (404,), tags=TAGS)
def show(session_id: int) -> dict[str, object]:
    return Session.of(container().sessions.get(principal(), session_id)).body()


@bp.patch(SESSION)
@documented({200: Session}, (404, 409), json=SessionPatch, tags=TAGS)
def update(session_id: int) -> dict[str, object]:
    """Change the session as the chat goes on: a new state_version, and new drafts. Its ticket
    or connection cannot change while a job of it may write to its ticket (409 naming it)."""
    data = body(SessionPatch)
    changes = {name: getattr(data, name) for name in data.model_fields_set}
    if "conversation_messages" in changes:
        changes["conversation_messages"] = [m.model_dump() for m in data.conversation_messages]
    session = container().sessions.update(principal(), session_id, changes)
    return Session.of(session).body()


@bp.post(f"{SESSION}{DOCUMENT}/post")
@documented({202: Accepted}, (404, 409), json=WritebackIn, tags=TAGS)
def post_writeback(session_id: int, document: str) -> tuple[dict[str, object], int, dict[str, str]]:
    data = body(WritebackIn)
    job = container().jobs.request_writeback(
        principal(), session_id, WRITEBACK_ROUTES[document], data.markdown
    )
    accepted = Accepted(job_id=job.id, **links(job.id))
    return accepted.body(), 202, {"Location": accepted.status_url}


@bp.post(f"{SESSION}{DOCUMENT}/preview")
@documented({200: Preview}, (404, 409, 422, 502), tags=TAGS)
def preview(session_id: int, document: str) -> dict[str, object]:
    kind = WRITEBACK_ROUTES[document]
    draft, cached = container().jobs.preview(principal(), session_id, kind)
    return Preview(
        kind=kind.value,
        markdown=draft.markdown,
        cached=cached,
        drafter=draft.drafter,
        usage=draft.usage,
    ).body()
