"""Liveness, readiness and metrics for orchestrators and scrapers: no auth, no secrets."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST

from writeback.api.context import container
from writeback.api.errors import problem
from writeback.api.openapi import documented
from writeback.api.responses import Out

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


class Health(Out):
    status: str


class Ready(Out):
    status: str
    checks: dict[str, str]


@bp.get("/healthz")
@documented({200: Health}, public=True, tags=("operations",))
def healthz() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@bp.get("/readyz")
@documented({200: Ready}, (503,), public=True, tags=("operations",))
def readyz() -> Response | dict[str, object]:
    """The database and the broker answer: safe to route traffic here."""
    checks = {"database": _database(), "broker": _broker()}
    if all(result == "ok" for result in checks.values()):
        return {"status": "ready", "checks": checks}
    return problem(
        503, "not_ready", "Service Unavailable", "A dependency is unreachable.", checks=checks
    )


@bp.get("/metrics")
@documented({200: None}, public=True, tags=("operations",))
def metrics() -> Response:
    """Job counts by state, for Prometheus. Aggregates only: no ids, no tenant data."""
    return Response(current_app.extensions["writeback.metrics"](), mimetype=CONTENT_TYPE_LATEST)


def _database() -> str:
    try:
        with container().engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        log.warning("readiness: database unreachable: %s", type(exc).__name__)
        return "unreachable"
    return "ok"


def _broker() -> str:
    try:
        with container().celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        log.warning("readiness: broker unreachable: %s", type(exc).__name__)
        return "unreachable"
    return "ok"
