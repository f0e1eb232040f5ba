"""ConnectWise's own OpenAPI document (2025.8, trimmed: vendor/README.md) as the judge of every
request the provider sends and every answer the simulator gives, through openapi-core.

openapi-core checks paths, parameter types, bodies and the success media type; it lets unknown
properties through, so `undeclared` adds that check: a field the vendor does not define is drift
too."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

from writeback.adapters.psa.http import HttpClient

SUBSET = Path(__file__).parent / "vendor" / "connectwise-openapi-subset.json"
API_ROOT = "/apis/3.0/"
MEDIA_TYPE = "application/vnd.connectwise.com+json"


@cache
def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SUBSET.read_text())
    return document


@cache
def _openapi() -> OpenAPI:
    # The vendor's media type is JSON; openapi-core knows only application/json by name.
    config = Config(extra_media_type_deserializers={MEDIA_TYPE: _json})
    return OpenAPI.from_dict(_document(), config=config)


def _json(value: bytes | str, **_parameters: str) -> Any:  # `version=` arrives as a parameter
    return json.loads(value)


class RecordingHttp(HttpClient):
    """An HttpClient that keeps every answer (and with it the request that was sent)."""

    def __init__(self, timeout: float) -> None:
        super().__init__(timeout)
        self.answers: list[requests.Response] = []

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        response = super().request(method, url, **kwargs)
        self.answers.append(response)
        return response


def on_vendor_server(prepared: requests.PreparedRequest) -> requests.PreparedRequest:
    """The same request addressed to the document's server (codebase and host differ)."""
    server = _document()["servers"][0]["url"]
    parts = urlsplit(prepared.url or "")
    moved = prepared.copy()
    moved.url = server + "/" + parts.path.split(API_ROOT, 1)[1]
    if parts.query:
        moved.url += "?" + parts.query
    return moved


def check_exchange(response: requests.Response) -> list[str]:
    """Every way one API call (request and, if successful, answer) drifts from the document.
    Calls outside the API root (companyinfo) are not in the document and are skipped."""
    if API_ROOT not in (response.request.url or ""):
        return []
    request = RequestsOpenAPIRequest(on_vendor_server(response.request))
    problems = []
    try:
        _openapi().validate_request(request)
    except Exception as exc:  # openapi-core's errors share no base class worth naming
        problems.append(f"request {request.method} {request.path}: {_explain(exc)}")
    if 200 <= response.status_code < 300:
        try:
            _openapi().validate_response(request, RequestsOpenAPIResponse(response))
        except Exception as exc:
            problems.append(f"answer to {request.method} {request.path}: {_explain(exc)}")
        schema = _success_schema(request.method.lower(), request.path)
        problems += [f"answer field {p}" for p in undeclared(response.json(), schema)]
    body = response.request.body
    if body:
        schema = _request_schema(request.method.lower(), request.path)
        problems += [f"request field {p}" for p in undeclared(json.loads(body), schema)]
    return problems


def undeclared(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Properties of `value` that `schema` (with its $refs) does not declare."""
    schema = _resolve(schema)
    if isinstance(value, list) and "items" in schema:
        return [p for item in value for p in undeclared(item, schema["items"], where + "[]")]
    if not isinstance(value, dict) or "properties" not in schema:
        return []
    found = []
    for name, item in value.items():
        declared = schema["properties"].get(name)
        if declared is None:
            found.append(f"{where}{name}")
        else:
            found += undeclared(item, declared, f"{where}{name}.")
    return found


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = _document()
        for part in schema["$ref"][2:].split("/"):
            node = node[part]
        schema = node
    return schema


def _operation(method: str, path: str) -> dict[str, Any]:
    for template, operations in _document()["paths"].items():
        if _matches(template, path) and method in operations:
            operation: dict[str, Any] = operations[method]
            return operation
    raise KeyError(f"{method} {path} is not in the document")


def _matches(template: str, path: str) -> bool:
    wanted = template.strip("/").split("/")
    given = path.split(API_ROOT, 1)[-1].strip("/").split("/")
    return len(wanted) == len(given) and all(
        w.startswith("{") or w == g for w, g in zip(wanted, given, strict=True)
    )


def _success_schema(method: str, path: str) -> dict[str, Any]:
    responses = _operation(method, path)["responses"]
    (content,) = next(r for code, r in responses.items() if code.startswith("2"))[
        "content"
    ].values()
    schema: dict[str, Any] = content["schema"]
    return schema


def _request_schema(method: str, path: str) -> dict[str, Any]:
    (content,) = _operation(method, path)["requestBody"]["content"].values()
    schema: dict[str, Any] = content["schema"]
    return schema


def _explain(exc: Exception) -> str:
    causes = [str(exc)]
    inner: BaseException | None = exc.__cause__
    while inner is not None:
        causes.append(str(inner))
        inner = inner.__cause__
    details = getattr(exc, "schema_errors", None) or getattr(exc.__cause__, "schema_errors", None)
    causes += [str(e.message) for e in details or []]
    return " / ".join(causes)
