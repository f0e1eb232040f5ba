"""Our own PostgreSQL or Redis down: every route answers 503 problem+json with Retry-After,
never 500, and works again once the server is back. Private servers: these tests stop them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.servers import PrivatePostgres, PrivateRedis
from writeback import bootstrap
from writeback.api import create_app
from writeback.config import load_settings
from writeback.domain.accounts import IssuedToken

pytestmark = pytest.mark.integration


@dataclass
class Deployment:
    pg: PrivatePostgres
    redis: PrivateRedis
    container: bootstrap.Container
    client: FlaskClient

    def session(self) -> tuple[IssuedToken, dict[str, str], dict[str, Any]]:
        """A fresh account, its auth header and a new session of it."""
        issued = self.container.accounts.create_account("outage")
        auth = {"Authorization": f"Bearer {issued.token}"}
        session = self.client.post("/api/v1/ai-sessions", json={}, headers=auth).get_json()
        return issued, auth, session

    def post(self, auth: dict[str, str], session: dict[str, Any]) -> TestResponse:
        path = f"/api/v1/ai-sessions/{session['id']}/resolution-note/post"
        return self.client.post(path, json={}, headers=auth)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with PrivatePostgres() as pg, PrivateRedis() as rd:
        env = {
            "DATABASE_URL": pg.create_database("wb_outage"),
            "CELERY_BROKER_URL": rd.url,
            "WRITEBACK_QUEUE": f"wb-outage-{uuid.uuid4().hex[:6]}",
            "WRITEBACK_SECRET_KEYS": Fernet.generate_key().decode(),
            "WRITEBACK_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        }
        container = bootstrap.build(load_settings(env))
        yield Deployment(pg, rd, container, create_app(container).test_client())
        container.close()


def _assert_unavailable(response: TestResponse) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    assert response.get_json()["code"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) > 0


def test_postgres_down_answers_503_on_every_route_then_recovers(deployment: Deployment) -> None:
    client = deployment.client
    issued, auth, session = deployment.session()  # its token is cached from here on
    job = deployment.post(auth, session).get_json()
    fresh = deployment.container.accounts.create_token(issued.account_id)
    etag = client.get(job["status_url"], headers=auth).headers["ETag"]
    deployment.pg.stop()
    try:
        # A poll of an in-flight job is answered from the version in Redis: no database read.
        polled = client.get(job["status_url"], headers={**auth, "If-None-Match": etag})
        assert polled.status_code == 304
        assert client.get(job["status_url"], headers=auth).get_json()["state"] == "queued"
        for method, path, body in (
            ("GET", f"/api/v1/jobs/{uuid.uuid4()}", None),
            ("GET", f"/api/v1/jobs/{job['job_id']}/events", None),
            ("GET", "/api/v1/jobs?state=failed", None),
            ("POST", f"/api/v1/ai-sessions/{session['id']}/escalation-package/post", {}),
            ("GET", f"/api/v1/ai-sessions/{session['id']}", None),
            ("PATCH", f"/api/v1/ai-sessions/{session['id']}", {"intake_content": {"a": 1}}),
            ("POST", "/api/v1/ai-sessions", {}),
            ("GET", "/api/v1/account-settings", None),
            ("GET", "/api/v1/psa-connections/1", None),
        ):
            _assert_unavailable(client.open(path, method=method, json=body, headers=auth))
        # A token the cache has not seen needs the database too: 503, not 401.
        fresh_auth = {"Authorization": f"Bearer {fresh.token}"}
        _assert_unavailable(client.get("/api/v1/account-settings", headers=fresh_auth))
        assert client.get("/readyz").status_code == 503
    finally:
        deployment.pg.start()
    assert client.get(f"/api/v1/jobs/{job['job_id']}/events", headers=auth).status_code == 200
    assert client.get(f"/api/v1/ai-sessions/{session['id']}", headers=auth).status_code == 200


def test_redis_down_keeps_posts_accepted_and_polls_answered(deployment: Deployment) -> None:
    _, auth, session = deployment.session()
    deployment.redis.stop()
    try:
        # The broker is Redis: the job is committed and left for the sweeper (202, as before).
        accepted = deployment.post(auth, session)
        assert accepted.status_code == 202
        polled = deployment.client.get(
            accepted.get_json()["status_url"], headers={**auth, "If-None-Match": '"stale"'}
        )
        assert polled.status_code == 200  # the version cache is away: the database answers
        assert polled.get_json()["state"] == "queued"
    finally:
        deployment.redis.start()
