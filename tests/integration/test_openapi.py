"""The served OpenAPI 3.1 document: every route and status, the problem+json schema, the bearer
scheme, examples; the docs page with local assets; TypeScript types generated from it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from openapi_spec_validator import validate

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def document(flask_client: FlaskClient) -> dict[str, object]:
    response = flask_client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()  # type: ignore[no-any-return]


def test_the_document_covers_every_route_with_errors_and_auth(
    document: dict, flask_client: FlaskClient
) -> None:
    assert document["openapi"].startswith("3.1")
    served = {
        (str(rule).replace("<", "{").replace(">", "}"), method)
        for rule in flask_client.application.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
        if not str(rule).startswith(("/static", "/api/v1/docs", "/api/v1/openapi"))
    }
    documented = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item
    }
    assert len(documented) == len(served) == 21
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
    }
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code", "errors"} <= problem["properties"].keys()
    job = document["paths"]["/api/v1/jobs/{job_id}"]["get"]["responses"]
    assert {"200", "304", "401", "404", "503"} <= job.keys()
    assert "application/problem+json" in job["404"]["content"]
    post = document["paths"]["/api/v1/ai-sessions/{session_id}/{document}/post"]["post"]
    examples = post["requestBody"]["content"]["application/json"]["examples"]
    assert {"resolve_with_the_draft", "resolve_with_markdown", "escalate_with_markdown"} <= set(
        examples
    )
    status = document["components"]["schemas"]["BoardStatusOut"]["properties"]
    assert status["closedStatus"]["deprecated"] is True and "closed_status" in status


def test_the_document_is_valid_openapi_3_1(document: dict) -> None:
    validate(document)  # raises, naming the place, on anything OAS 3.1 does not allow
    events = document["paths"]["/api/v1/jobs/{job_id}/events"]["get"]
    assert events["security"] == [{"bearer": []}, {"events_url": []}]
    assert document["components"]["schemas"]["Job"]["properties"]["events_url"]["type"] == "string"


def test_the_docs_page_serves_its_own_assets(flask_client: FlaskClient) -> None:
    page = flask_client.get("/api/v1/docs").get_data(as_text=True)
    assert "http" not in page.replace("/api/v1", "")  # nothing from a CDN
    for asset in ("js/swagger-ui-bundle.js", "css/swagger-ui.css"):
        with flask_client.get(f"/api/v1/docs/assets/{asset}") as response:
            assert response.status_code == 200 and len(response.get_data()) > 10_000


def test_typescript_types_generate_from_the_document(document: dict, tmp_path: Path) -> None:
    if shutil.which("npx") is None:
        pytest.skip("npx (Node.js) is not installed: openapi-typescript cannot run")
    source = tmp_path / "openapi.json"
    source.write_text(json.dumps(document))
    result = subprocess.run(
        ["npx", "--yes", "openapi-typescript@7", str(source), "-o", str(tmp_path / "api.d.ts")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    types = (tmp_path / "api.d.ts").read_text()
    assert '"/api/v1/jobs/{job_id}"' in types and "poll_after_ms" in types
