"""RFC 9457 problem details: every error leaves the API in this one shape, from one place."""

from __future__ import annotations

import logging
import math
from typing import Any

import redis
from flask import Flask, Response, jsonify
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from writeback.api.context import UnstorableInput
from writeback.domain.errors import (
    BudgetWait,
    Conflict,
    DomainError,
    DraftRejected,
    InvalidInput,
    LlmUnavailable,
    NotFound,
    PartUnavailable,
    PsaError,
    SessionGone,
    StatusTargetError,
    Unauthorized,
    Wait,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
OUTAGE_RETRY_AFTER = 5  # seconds: a restarting PostgreSQL or Redis is usually back by then


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> Response:
    body = {
        "type": f"urn:psa-writeback:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    response = jsonify(body)
    response.status_code = status
    response.content_type = PROBLEM_JSON
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="psa-writeback"'
    return response


def _field_path(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location) or "body"


def _validation_error(exc: ValidationError) -> Response:
    errors = [{"field": _field_path(e["loc"]), "message": e["msg"]} for e in exc.errors()]
    fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
    return problem(
        422,
        "validation_error",
        "Unprocessable Content",
        f"Invalid value for: {fields}.",
        errors=errors,
    )


def _unstorable(exc: UnstorableInput) -> Response:
    fields = ", ".join(e["field"] for e in exc.errors)
    return problem(
        422,
        "validation_error",
        "Unprocessable Content",
        f"Invalid value for: {fields}.",
        errors=exc.errors,
    )


def _outage(exc: Exception) -> Response:
    """Our own database or Redis is unreachable: the caller may retry, nothing was half-done
    (a transaction that did not commit left nothing behind)."""
    log.warning("dependency unreachable: %s", type(exc).__name__)
    response = problem(
        503,
        "service_unavailable",
        "Service Unavailable",
        "A dependency of the service is unreachable; retry shortly.",
    )
    response.headers["Retry-After"] = str(OUTAGE_RETRY_AFTER)
    return response


def _is_outage(exc: Exception) -> bool:
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | sa_exc.TimeoutError):
        return True  # sa TimeoutError: the pool could not hand out a connection in time
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(exc, sa_exc.OperationalError)
    return False


def _domain_error(exc: DomainError) -> Response:
    if isinstance(exc, PartUnavailable):  # our own database or Redis
        return _outage(exc)
    if isinstance(exc, InvalidInput):
        return problem(
            422,
            "validation_error",
            "Unprocessable Content",
            exc.message,
            errors=[{"field": exc.field, "message": exc.message}],
        )
    if isinstance(exc, NotFound | SessionGone):
        return problem(404, "not_found", "Not Found", exc.message)
    if isinstance(exc, Unauthorized):
        return problem(401, exc.code, "Unauthorized", exc.message)
    if isinstance(exc, Conflict) and exc.job_id is not None:
        return problem(
            409,
            exc.code,
            "Conflict",
            exc.message,
            job_id=exc.job_id,
            status_url=f"/api/v1/jobs/{exc.job_id}",
        )
    if isinstance(exc, Conflict):
        return problem(409, exc.code, "Conflict", exc.message)
    if isinstance(exc, StatusTargetError):  # the status map no longer fits the PSA's board
        return problem(409, exc.code, "Conflict", exc.message)
    if isinstance(exc, BudgetWait):  # the PSA's limits are busy (a batch): not a failure
        retry_after = max(1, math.ceil(exc.wait))
        detail = (
            f"{exc.message}: other requests to this PSA use its limits; retry in {retry_after} s."
        )
        response = problem(429, "psa_budget_busy", "Too Many Requests", detail)
        response.headers["Retry-After"] = str(retry_after)
        return response
    if isinstance(exc, PsaError):  # a PSA call made on the caller's behalf failed
        return problem(502, exc.code, "Bad Gateway", exc.message, failed=exc.failed)
    if isinstance(exc, DraftRejected):
        return problem(422, exc.code, "Unprocessable Content", exc.message)
    if isinstance(exc, LlmUnavailable):
        response = problem(503, exc.code, "Service Unavailable", exc.message)
        response.headers["Retry-After"] = str(max(1, round(exc.retry_after or 5)))
        return response
    if isinstance(exc, Wait):  # any other wait: try again shortly
        response = problem(503, exc.code, "Service Unavailable", exc.message)
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.wait)))
        return response
    log.error("unmapped domain error %s", type(exc).__name__)
    return problem(500, "internal_error", "Internal Server Error", "An unexpected error occurred.")


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = (exc.name or "error").lower().replace(" ", "_")
    return problem(status, code, exc.name or "Error", exc.description or exc.name or "")


def _unexpected(exc: Exception) -> Response:
    if _is_outage(exc):
        return _outage(exc)
    log.exception("unhandled error")
    return problem(500, "internal_error", "Internal Server Error", "An unexpected error occurred.")


def register(app: Flask) -> None:
    app.register_error_handler(ValidationError, _validation_error)
    app.register_error_handler(UnstorableInput, _unstorable)
    app.register_error_handler(DomainError, _domain_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
