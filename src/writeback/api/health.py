"""Liveness, readiness and metrics for orchestrators and scrapers: no auth, no secrets."""

from __future__ import annotations

import logging
import math
from typing import Literal

import sqlalchemy as sa
from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST

from writeback.adapters.metrics import seconds_since_sweep
from writeback.api.context import container
from writeback.api.errors import problem
from writeback.api.openapi import documented
from writeback.api.responses import Out

log = logging.getLogger(__name__)
# A scheduler that missed this many sweeps (and 10 s at least) is reported stale.
STALE_SWEEPS = 5

bp = Blueprint("health", __name__)


class Health(Out):
    status: str


class Sweeps(Out):
    """Beat's sweep admits held jobs and recovers lost ones; without it they wait forever."""

    state: Literal["ok", "stale", "never"]
    seconds_since_sweep: float | None


class Ready(Out):
    status: str
    checks: dict[str, str]
    scheduler: Sweeps | None = None


@bp.get("/healthz")
@documented({200: Health}, public=True, tags=("operations",))
def healthz() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@bp.get("/readyz")
@documented({200: Ready}, (503,), public=True, tags=("operations",))
def readyz() -> Response | dict[str, object]:
    """The database and the broker answer: safe to route traffic here. `scheduler` says whether
    beat sweeps (a stale one is no reason to stop serving: posts are kept for it)."""
    checks = {"database": _database(), "broker": _broker()}
    if all(result == "ok" for result in checks.values()):
        return Ready(status="ready", checks=checks, scheduler=_scheduler()).body()
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


def _scheduler() -> Sweeps | None:
    stale_after = max(STALE_SWEEPS * container().settings.sweep_interval, 10.0)
    try:
        with container().read_engine.connect() as conn:
            since = seconds_since_sweep(conn)
    except Exception as exc:
        log.warning("readiness: last sweep unknown: %s", type(exc).__name__)
        return None
    if math.isinf(since):
        return Sweeps(state="never", seconds_since_sweep=None)
    return Sweeps(state="ok" if since <= stale_after else "stale", seconds_since_sweep=since)


def _broker() -> str:
    try:
        with container().celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        log.warning("readiness: broker unreachable: %s", type(exc).__name__)
        return "unreachable"
    return "ok"
