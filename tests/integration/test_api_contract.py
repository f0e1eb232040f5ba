"""The outside contract's edges: auth, problem+json errors naming the field, size limits,
credentials never echoed and sealed at rest. Real PostgreSQL behind the Flask app."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from tests.support import Api
from writeback import bootstrap
from writeback.api import create_app
from writeback.config import load_settings

pytestmark = pytest.mark.integration

CONNECTION = {
    "provider": "connectwise",
    # A literal address: the SSRF guard resolves every host name, and tests have no DNS.
    "site_url": "https://127.0.0.1:9",
    "company_id": "ACME",
    "credentials": {"public_key": "pk", "private_key": "super-secret-private", "client_id": "c"},
}


def _assert_problem(response: object, status: int) -> dict[str, object]:
    assert response.status_code == status, response.get_data(as_text=True)  # type: ignore[attr-defined]
    assert response.content_type == "application/problem+json"  # type: ignore[attr-defined]
    body = response.get_json()  # type: ignore[attr-defined]
    assert {"type", "title", "status", "detail", "code"} <= body.keys()
    assert body["status"] == status
    assert "Traceback" not in str(body)
    return body  # type: ignore[no-any-return]


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer wb_not-a-real-token", "Basic abc"])
def test_every_route_needs_a_valid_bearer_token(
    flask_client: FlaskClient, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    for path in (
        "/api/v1/ai-sessions/1",
        "/api/v1/jobs/x",
        "/api/v1/account-settings",
        "/api/v1/psa-connections/1",
    ):
        body = _assert_problem(flask_client.get(path, headers=headers), 401)
        assert body["code"] == "unauthorized"


def test_validation_errors_are_422_and_name_each_field(api: Api) -> None:
    problem = api.post(
        "/ai-sessions",
        {"conversation_messages": [{"role": "robot"}], "psa_connection_id": "seven"},
        expect=422,
    )
    fields = {e["field"] for e in problem["errors"]}
    assert fields == {
        "conversation_messages.0.role",
        "conversation_messages.0.content",
        "psa_connection_id",
    }
    problem = api.put("/account-settings", {"resolved_status_id": -1, "colour": "red"}, expect=422)
    assert {e["field"] for e in problem["errors"]} == {"resolved_status_id", "colour"}


def test_a_rejected_post_leaves_no_half_written_job(api: Api) -> None:
    session_id = api.session()
    problem = api.start(session_id, markdown="", expect=422)
    assert problem["errors"][0]["field"] == "markdown"
    assert api.start(session_id, expect=202)["job_id"]


def test_non_json_bodies_are_refused_clearly(api: Api, flask_client: FlaskClient) -> None:
    token = api.token_header
    plain = flask_client.post("/api/v1/ai-sessions", data="hello", headers=token)
    assert _assert_problem(plain, 415)["code"] == "unsupported_media_type"
    broken = flask_client.post(
        "/api/v1/ai-sessions", data="{nope", headers={**token, "Content-Type": "application/json"}
    )
    _assert_problem(broken, 400)
    array = flask_client.post("/api/v1/ai-sessions", json=[1, 2], headers=token)
    _assert_problem(array, 400)


def test_oversize_bodies_are_413(api: Api, flask_client: FlaskClient) -> None:
    huge = {"intake_content": {"text": "x" * 2_000_000}}
    _assert_problem(
        flask_client.post("/api/v1/ai-sessions", json=huge, headers=api.token_header), 413
    )


def test_unknown_routes_and_methods_answer_in_problem_json(flask_client: FlaskClient) -> None:
    _assert_problem(flask_client.get("/api/v1/nothing-here"), 404)
    _assert_problem(flask_client.delete("/healthz"), 405)


def test_credentials_are_never_echoed_and_are_sealed_at_rest(
    api: Api, container: bootstrap.Container
) -> None:
    created = api.post("/psa-connections", CONNECTION, expect=201)
    shown = api.get(f"/psa-connections/{created['id']}")
    for body in (created, shown):
        assert "credentials" not in body and "super-secret-private" not in str(body)
        assert body["is_active"] is True and body["site_url"] == CONNECTION["site_url"]
    with container.engine.connect() as conn:
        sealed = conn.execute(
            sa.text("SELECT credentials_encrypted FROM psa_connections WHERE id = :id"),
            {"id": created["id"]},
        ).scalar_one()
    assert b"super-secret-private" not in bytes(sealed)
    assert container.sealer.open(bytes(sealed))["private_key"] == "super-secret-private"


def test_private_site_urls_are_refused_unless_the_operator_allows_them(
    service_env: dict[str, str], api: Api
) -> None:
    strict = bootstrap.build(
        load_settings({**service_env, "WRITEBACK_PSA_ALLOW_PRIVATE_HOSTS": "0"})
    )
    client = create_app(strict).test_client()
    for site_url in ("http://127.0.0.1:8089", "https://10.0.0.5", "https://169.254.169.254"):
        body = {**CONNECTION, "site_url": site_url}
        answer = client.post("/api/v1/psa-connections", json=body, headers=api.token_header)
        problem = _assert_problem(answer, 422)
        assert problem["errors"][0]["field"] == "site_url"  # type: ignore[index]
    strict.close()


def test_a_session_patch_changes_only_what_is_sent_and_bumps_the_state(api: Api) -> None:
    session_id = api.session()
    before = api.get(f"/ai-sessions/{session_id}")
    after = api.call(
        "PATCH",
        f"/ai-sessions/{session_id}",
        {"conversation_messages": [{"role": "user", "content": "still broken"}]},
        expect=200,
    )
    assert after["state_version"] == before["state_version"] + 1
    assert after["intake_content"] == before["intake_content"]
    assert after["conversation_messages"] == [{"role": "user", "content": "still broken"}]
    for bad in ({"conversation_messages": None}, {"intake_content": None}, {"psa_ticket_id": "7"}):
        problem = api.call("PATCH", f"/ai-sessions/{session_id}", bad, expect=422)
        assert problem["errors"][0]["field"] in bad
