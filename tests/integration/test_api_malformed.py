"""No malformed request gets a 5xx: each named case answers 400/404/422 naming the field, and
a property-based fuzz over every route of API.md finds no server error. Real PostgreSQL."""

from __future__ import annotations

import base64
import json
import socket
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import Api
from writeback import bootstrap

pytestmark = pytest.mark.integration


def _fields(response) -> set[str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 422, response.get_data(as_text=True)
    return {e["field"] for e in response.get_json()["errors"]}


def test_named_malformed_cases_are_refused_without_a_5xx(
    api: Api, flask_client: FlaskClient
) -> None:
    auth = {**api.token_header, "Content-Type": "application/json"}
    deep = "[" * 100_000 + "]" * 100_000
    response = flask_client.post("/api/v1/ai-sessions", data=deep, headers=auth)
    assert response.status_code == 400
    nul = flask_client.post(
        "/api/v1/ai-sessions", json={"intake_content": {"note": "a\x00b"}}, headers=auth
    )
    assert _fields(nul) == {"intake_content.note"}
    surrogate = flask_client.post(
        "/api/v1/ai-sessions",
        data='{"conversation_messages": [{"role": "user", "content": "x\\ud800"}]}',
        headers=auth,
    )
    assert _fields(surrogate) == {"conversation_messages.0.content"}
    nan = flask_client.post(
        "/api/v1/ai-sessions", data='{"intake_content": {"x": NaN}}', headers=auth
    )
    assert _fields(nan) == {"intake_content.x"}
    huge = flask_client.put(
        "/api/v1/account-settings", json={"resolved_status_id": 2**40}, headers=auth
    )
    assert _fields(huge) == {"resolved_status_id"}
    assert _fields(flask_client.get("/api/v1/jobs?older_than=99999999999d", headers=auth)) == {
        "older_than"
    }
    naive = base64.urlsafe_b64encode(
        json.dumps(["2026-01-01T00:00:00", "0c1e0c4e-8f51-4f43-9d2e-1b1a4c1b2a3e"]).encode()
    ).decode()
    assert _fields(flask_client.get(f"/api/v1/jobs?cursor={naive}", headers=auth)) == {"cursor"}
    assert flask_client.get("/api/v1/jobs/%00", headers=auth).status_code == 404
    assert flask_client.get(f"/api/v1/ai-sessions/{2**40}", headers=auth).status_code == 404
    session_id = api.session()
    missing = flask_client.patch(
        f"/api/v1/ai-sessions/{session_id}",
        json={"psa_connection_id": 999_999, "psa_ticket_id": "1"},
        headers=auth,
    )
    assert _fields(missing) == {"psa_connection_id"}
    # Nothing half-written: the session is as it was.
    assert api.get(f"/ai-sessions/{session_id}")["state_version"] == 1


def test_an_invalid_chunked_body_is_400_behind_gunicorn(gunicorn_api: tuple[str, Api]) -> None:
    url, api = gunicorn_api
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/ai-sessions HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: {api.token_header['Authorization']}\r\n".encode()
            + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"zz\r\n{}\r\n0\r\n\r\n"
        )
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"400", status_line


# The fuzz: every route of API.md, any JSON body or path segment or query value.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = (
    "provider site_url company_id credentials mappings board_id kind status "
    "resolved_status_id escalated_status_id cw_resolved_status_id session_type intake_type "
    "intake_content conversation_messages psa_connection_id psa_ticket_id markdown"
).split()
bodies = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=5) | json_values
segments = st.text(max_size=30) | st.integers(min_value=-(2**64), max_value=2**64).map(str)
ROUTES = (
    ("POST", "/psa-connections"),
    ("GET", "/psa-connections/{x}"),
    ("PUT", "/psa-connections/{x}/status-map"),
    ("GET", "/psa-connections/{x}/status-map"),
    ("GET", "/psa-connections/{x}/boards"),
    ("GET", "/psa-connections/{x}/boards/{x}/statuses"),
    ("POST", "/psa-connections/{x}/test"),
    ("GET", "/account-settings"),
    ("PUT", "/account-settings"),
    ("POST", "/ai-sessions"),
    ("GET", "/ai-sessions/{x}"),
    ("PATCH", "/ai-sessions/{x}"),
    ("POST", "/ai-sessions/{x}/resolution-note/preview"),
    ("POST", "/ai-sessions/{x}/escalation-package/post"),
    ("GET", "/jobs?state={x}&kind={x}&older_than={x}&limit={x}&cursor={x}"),
    ("GET", "/jobs/{x}"),
    ("GET", "/jobs/{x}/events"),
    ("POST", "/jobs/{x}/retry"),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(route=st.sampled_from(ROUTES), segment=segments, body=bodies, raw=st.booleans())
def test_fuzzed_requests_never_get_a_server_error(
    fuzz_client: tuple[FlaskClient, dict[str, str]],
    route: tuple[str, str],
    segment: str,
    body: object,
    raw: bool,
) -> None:
    client, auth = fuzz_client
    method, template = route
    path = "/api/v1" + template.replace("{x}", segment.replace("/", "%2F").replace("?", "%3F"))
    if raw:  # bytes as sent, not necessarily valid JSON or UTF-8
        data = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
        response = client.open(
            path, method=method, data=data, headers={**auth, "Content-Type": "application/json"}
        )
    else:
        response = client.open(path, method=method, json=body, headers=auth)
    assert response.status_code < 500, (method, path, response.get_data(as_text=True))


@pytest.fixture(scope="module")
def fuzz_client(container: bootstrap.Container) -> tuple[FlaskClient, dict[str, str]]:
    from tests.integration.conftest import new_api
    from writeback.api import create_app

    api = new_api(container, create_app(container).test_client())
    return create_app(container).test_client(), api.token_header


@pytest.mark.parametrize("session_id", ["0", "2147483648", "15816705776", "9" * 40])
def test_an_id_out_of_range_is_not_found_whatever_the_method(
    api: Api, flask_client: FlaskClient, session_id: str
) -> None:
    """Not 405: Werkzeug's own int converter rejects such an id while matching, and then
    answers 405 to every method but GET (a schemathesis run found it on PATCH)."""
    path = f"/api/v1/ai-sessions/{session_id}"
    assert flask_client.get(path, headers=api.token_header).status_code == 404
    patch = flask_client.patch(path, json={"psa_ticket_id": "42"}, headers=api.token_header)
    assert patch.status_code == 404, patch.get_data(as_text=True)
    post = flask_client.post(f"{path}/resolution-note/post", json={}, headers=api.token_header)
    assert post.status_code == 404
    board = flask_client.put(
        f"/api/v1/psa-connections/{session_id}/status-map",
        json={"mappings": []},
        headers=api.token_header,
    )
    assert board.status_code == 404, board.get_data(as_text=True)
