"""Our own PostgreSQL or Redis down: every route answers 503 problem+json with Retry-After,
never 500, and works again once the server is back. Private servers: these tests stop them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet
from flask.testing import FlaskClient

from tests.servers import PrivatePostgres, PrivateRedis
from writeback import bootstrap
from writeback.api import create_app
from writeback.config import load_settings
from writeback.domain import services
from writeback.domain.model import utcnow

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrivatePostgres, str]]:
    root = tmp_path_factory.mktemp("private")
    with PrivatePostgres() as pg, PrivateRedis(root / "redis") as rd:
        yield pg, rd.url, rd  # type: ignore[misc]


@pytest.fixture(scope="module")
def deployment(servers, tmp_path_factory) -> Iterator[tuple[bootstrap.Container, FlaskClient]]:  # type: ignore[no-untyped-def]
    pg, redis_url, _ = servers
    env = {
        "DATABASE_URL": pg.create_database("wb_outage"),
        "CELERY_BROKER_URL": redis_url,
        "WRITEBACK_QUEUE": f"wb-outage-{uuid.uuid4().hex[:6]}",
        "WRITEBACK_SECRET_KEYS": Fernet.generate_key().decode(),
        "WRITEBACK_DATA_DIR": str(tmp_path_factory.mktemp("data")),
    }
    container = bootstrap.build(load_settings(env))
    yield container, create_app(container).test_client()
    container.close()


def _assert_unavailable(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    assert response.get_json()["code"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) > 0


def test_postgres_down_answers_503_on_every_route_then_recovers(servers, deployment) -> None:  # type: ignore[no-untyped-def]
    pg, _, _ = servers
    container, client = deployment
    issued = services.create_account("outage", uow=container.uow, clock=utcnow)
    auth = {"Authorization": f"Bearer {issued.token}"}
    session = client.post("/api/v1/ai-sessions", json={}, headers=auth).get_json()
    job = client.post(
        f"/api/v1/ai-sessions/{session['id']}/resolution-note/post", json={}, headers=auth
    ).get_json()
    fresh = services.create_token(issued.account_id, uow=container.uow, clock=utcnow)
    etag = client.get(job["status_url"], headers=auth).headers["ETag"]
    pg.stop()
    try:
        # A poll of an in-flight job is answered from the version in Redis: no database read.
        assert (
            client.get(job["status_url"], headers={**auth, "If-None-Match": etag}).status_code
            == 304
        )
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
        _assert_unavailable(
            client.get(
                "/api/v1/account-settings", headers={"Authorization": f"Bearer {fresh.token}"}
            )
        )
        assert client.get("/readyz").status_code == 503
    finally:
        pg.start()
    assert client.get(f"/api/v1/jobs/{job['job_id']}", headers=auth).status_code == 200
    assert client.get(f"/api/v1/ai-sessions/{session['id']}", headers=auth).status_code == 200


def test_redis_down_keeps_posts_accepted_and_polls_answered(servers, deployment) -> None:  # type: ignore[no-untyped-def]
    _, _, rd = servers
    container, client = deployment
    issued = services.create_account("redis-outage", uow=container.uow, clock=utcnow)
    auth = {"Authorization": f"Bearer {issued.token}"}
    session = client.post("/api/v1/ai-sessions", json={}, headers=auth).get_json()
    rd.stop()
    try:
        # The broker is Redis: the job is committed and left for the sweeper (202, as before).
        accepted = client.post(
            f"/api/v1/ai-sessions/{session['id']}/resolution-note/post", json={}, headers=auth
        )
        assert accepted.status_code == 202
        polled = client.get(
            accepted.get_json()["status_url"], headers={**auth, "If-None-Match": '"stale"'}
        )
        assert polled.status_code == 200  # the version cache is away: the database answers
        assert polled.get_json()["state"] == "queued"
    finally:
        rd.start()
