from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from flask import Blueprint, Response, g, jsonify, request

from writeback.api import streams
from writeback.api.context import authenticate_request, container, principal
from writeback.api.openapi import documented
from writeback.api.responses import Accepted, Events, Job, JobPage
from writeback.api.schemas import JobListQuery, encode_cursor
from writeback.domain.errors import NotFound
from writeback.domain.job_versions import JobVersion, version_of
from writeback.domain.model import IN_FLIGHT_STATES, JobEvent, JobFilter, utcnow

bp = Blueprint("jobs", __name__, url_prefix="/api/v1/jobs")
TAGS = ("jobs",)
# The query parameter of an events_url that carries its credential.
ACCESS = "access"


@bp.before_request
def _authenticate() -> None:
    """The bearer token, on every route; on the event stream alone, instead, the credential of
    an events_url (a browser's EventSource cannot send a header)."""
    credential = request.args.get(ACCESS)
    if request.endpoint == "jobs.events" and credential and "Authorization" not in request.headers:
        job_id = _job_ref(str((request.view_args or {})["job_id"]))
        g.principal = container().stream_credentials.principal(credential, job_id)
    else:
        authenticate_request()


def links(job_id: str) -> dict[str, str]:
    """Where to follow a job: its state (with the bearer token) and its live events."""
    return {"status_url": f"/api/v1/jobs/{job_id}", "events_url": events_url(job_id)}


def events_url(job_id: str) -> str:
    """A URL that a browser's EventSource opens as it is, from any origin CORS allows. Every
    poll's answer carries one, so it is formatted, not built by url_for (ten times the cost);
    the credential is URL-safe as it is."""
    credential = container().stream_credentials.issue(principal(), job_id)
    return f"{request.host_url}api/v1/jobs/{job_id}/events?{ACCESS}={credential}"


@bp.get("")
@documented({200: JobPage}, query=JobListQuery, tags=TAGS)
def index() -> dict[str, object]:
    """The account's jobs, newest first: `?state=failed&kind=escalate&older_than=30m&limit=50`."""
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
    return JobPage(
        items=[Job.of(job, events_url=events_url(job.id)) for job in page],
        next_cursor=encode_cursor(next_cursor) if next_cursor else None,
    ).body()


@bp.get("/<job_id>")
@documented({200: Job, 304: None}, (404,), tags=TAGS)
def show(job_id: str) -> Response:
    """The job. Send its ETag in If-None-Match: an unchanged job answers 304 (which carries no
    fresh events_url). Both answers come from the version the worker published, without a
    database read, when there is one."""
    me, job_id = principal(), _job_ref(job_id)
    known = container().feed.version(job_id)
    # The account travels with the version: another account's job stays 404.
    if known is not None and known.account_id == me.account_id:
        if _matches(known):
            return _polled(Response(status=304), known)
        if known.body is not None:
            return _polled(jsonify({**known.body, "events_url": events_url(job_id)}), known)
    job = container().jobs.get(me, job_id)
    version = version_of(job)
    if _matches(version):
        return _polled(Response(status=304), version)
    return _polled(jsonify(Job.of(job, events_url=events_url(job_id)).body()), version)


def _job_ref(text: str) -> str:
    """Job ids are UUIDs: anything else is a job that does not exist (after the token check,
    like every other missing object)."""
    try:
        return str(UUID(text))
    except ValueError:
        raise NotFound(f"Job {text[:40]!r} not found.") from None


def _matches(version: JobVersion) -> bool:
    return request.if_none_match.contains_weak(version.etag.strip('"'))


def _polled(response: Response, version: JobVersion) -> Response:
    # Weak: two answers of one version differ in their events_url's credential, nothing else.
    response.set_etag(version.etag.strip('"'), weak=True)
    if version.poll_after_ms is not None:
        response.headers["Retry-After"] = str(max(1, round(version.poll_after_ms / 1000)))
    return response


@bp.get("/<job_id>/events")
@documented({200: Events}, (404,), tags=TAGS)
def events(job_id: str) -> Response | dict[str, object]:
    """The audit trail of every step attempt; with Accept: text/event-stream, a live stream."""
    me, c, job_ref = principal(), container(), _job_ref(job_id)
    if request.accept_mimetypes.best_match(["application/json", streams.EVENT_STREAM]) != (
        streams.EVENT_STREAM
    ):
        return Events.of(job_ref, c.jobs.events(me, job_ref)).body()
    c.jobs.get(me, job_ref)  # 404 before the stream starts

    def read_after(last_id: int) -> tuple[Sequence[JobEvent], bool]:
        # The state is read before the events, so that a final state's own event is among them.
        # A version in the feed is an in-flight job's: no read needed to know that much (where
        # a transition went unpublished, the end comes late by at most the feed's TTL).
        known = c.feed.version(job_ref)
        final = known.final if known else c.jobs.get(me, job_ref).state not in IN_FLIGHT_STATES
        return c.jobs.events(me, job_ref, last_id), final

    stream = streams.job_events(
        read_after,
        c.feed.subscribe(job_ref),
        last_id=streams.last_event_id(request.headers.get("Last-Event-ID")),
        lifetime=c.settings.sse_lifetime,
        poll_interval=c.settings.sse_poll_interval,
    )
    return Response(
        stream,
        mimetype=streams.EVENT_STREAM,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@bp.post("/<job_id>/retry")
@documented({202: Accepted}, (404, 409), tags=TAGS)
def retry(job_id: str) -> tuple[dict[str, object], int]:
    """Re-run a failed job from the step where it stopped (a posted note is never re-posted)."""
    job = container().jobs.retry(_job_ref(job_id), principal().account_id)
    return Accepted(job_id=job.id, **links(job.id)).body(), 202
