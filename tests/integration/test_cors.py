"""CORS: only the origins in WRITEBACK_CORS_ORIGINS, none by default; a preflight needs no
token; the poll headers are readable by the page."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.support import Api
from writeback import bootstrap
from writeback.api import create_app

pytestmark = pytest.mark.integration

FRONTEND = "https://app.example.com"


def test_no_origin_is_allowed_by_default(container: bootstrap.Container) -> None:
    client = create_app(container).test_client()
    response = client.get("/api/v1/jobs", headers={"Origin": FRONTEND})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_configured_origins_may_call_and_read_the_poll_headers(
    container: bootstrap.Container, api: Api
) -> None:
    settings = container.settings.model_copy(update={"cors_origins": (FRONTEND,)})
    client = create_app(replace(container, settings=settings)).test_client()
    preflight = client.options(
        "/api/v1/jobs/0c1e0c4e-8f51-4f43-9d2e-1b1a4c1b2a3e",
        headers={
            "Origin": FRONTEND,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization, If-None-Match",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == FRONTEND
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "if-none-match" in allowed
    job_id = api.start(api.session())["job_id"]
    response = client.get(
        f"/api/v1/jobs/{job_id}", headers={**api.token_header, "Origin": FRONTEND}
    )
    assert response.headers["Access-Control-Allow-Origin"] == FRONTEND
    assert "etag" in response.headers["Access-Control-Expose-Headers"].lower()
    stranger = client.get(
        "/api/v1/jobs", headers={**api.token_header, "Origin": "https://evil.test"}
    )
    assert "Access-Control-Allow-Origin" not in stranger.headers
    api.wait_job(job_id)
