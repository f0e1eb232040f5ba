"""The fields the troubleshooting guide tells an operator to read on a job are the fields the
API answers with, checked against the served OpenAPI document: a guide that names a field the
API does not have sends someone looking for it in the middle of an incident."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

pytestmark = pytest.mark.integration

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"
FIELD = re.compile(r"`([a-z_]+(?:\.[a-z_]+)*)`")  # `state`, `error.code`; not routes or values


def documented_job_fields() -> set[str]:
    """The fields named in the guide's opening paragraph and its API row."""
    text = GUIDE.read_text()
    opening = text.split("\n\n", 2)[1]
    [api_row] = [line for line in text.splitlines() if line.startswith("| API |")]
    return set(FIELD.findall(opening)) | set(FIELD.findall(api_row))


def _schema(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _has(document: dict[str, Any], schema: dict[str, Any], path: str) -> bool:
    head, _, rest = path.partition(".")
    for option in _schema(document, schema).get("anyOf", [schema]):  # nullable: X or null
        properties = _schema(document, option).get("properties", {})
        if head in properties and (not rest or _has(document, properties[head], rest)):
            return True
    return False


def test_the_job_fields_the_guide_names_are_in_the_openapi_document(
    flask_client: FlaskClient,
) -> None:
    document = flask_client.get("/api/v1/openapi.json").get_json()
    job = document["paths"]["/api/v1/jobs/{job_id}"]["get"]["responses"]["200"]
    schema = job["content"]["application/json"]["schema"]
    fields = documented_job_fields()

    assert [f for f in sorted(fields) if not _has(document, schema, f)] == []
    assert {"state", "error.code", "error.message"} <= fields
