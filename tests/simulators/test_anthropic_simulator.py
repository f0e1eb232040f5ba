"""The Anthropic Messages API stub over real HTTP: the SDK call, control API, faults and caching."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import anthropic
import pytest
import requests
from pydantic import BaseModel, ConfigDict, Field

from tests.simulators.conftest import SimClient, run_module, simulator_fixtures
from writeback_simulators.anthropic import create_app
from writeback_simulators.server import RunningServer, serve

MODEL = "claude-sonnet-4-6"
VERSION = "2023-06-01"
TOOL_NAME = "escalation_package"
ESCALATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "problem": {"type": "string", "description": "The customer's problem"},
        "confirmed": {"type": "array", "items": {"type": "string"}},
        "tried": {"type": "array", "items": {"type": "string"}},
        "hypothesis": {"type": "string"},
        "next_steps": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["problem", "confirmed", "tried", "hypothesis", "next_steps"],
    "additionalProperties": False,
}
ESCALATION_TOOL: dict[str, Any] = {
    "name": TOOL_NAME,
    "description": "Record the escalation package",
    "input_schema": ESCALATION_SCHEMA,
    "strict": True,
}
FORCE_TOOL = {"type": "tool", "name": TOOL_NAME}
USER_TEXT = (
    "Printer on floor 2 jams every morning since the driver update on Monday; "
    "we power cycled it and cleared the queue but it keeps failing."
)
SYSTEM_RULES = "You write escalation packages for MSP technicians. " * 40


class EscalationPackage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    problem: str
    confirmed: list[str]
    tried: list[str]
    hypothesis: str
    next_steps: list[str]


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(max_length=10)
    email: str | None = None


class Constrained(BaseModel):
    """Exercises $defs/$ref, anyOf-with-null, enums, bounds and array sizes."""

    model_config = ConfigDict(extra="forbid", strict=True)

    summary: str = Field(min_length=80, max_length=120)
    priority: Literal["high", "low"]
    severity: int = Field(ge=3, le=5)
    score: float = Field(gt=1.5)
    urgent: bool
    tags: list[str] = Field(min_length=3, max_length=4)
    steps: list[str] = Field(max_length=1)
    owner: Contact
    backup: Contact | None = None
    attempts: list[int] = Field(min_length=2)


class Stub(SimClient):
    """Vendor calls with a key, control calls."""

    def messages(
        self, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> requests.Response:
        if headers is None:
            headers = {"x-api-key": "test-key", "anthropic-version": VERSION}
        return self.session.post(f"{self.url}/v1/messages", json=body, headers=headers, timeout=5)

    def ok(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self.messages(body)
        assert response.status_code == 200, response.text
        message: dict[str, Any] = response.json()
        return message

    def answer(self, **spec: Any) -> int:
        return self.created("answers", **spec)

    def log(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.control("GET", "requests").json()
        return entries


def body(text: str = USER_TEXT, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def tool_body(schema: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    tool = {**ESCALATION_TOOL, "input_schema": schema or ESCALATION_SCHEMA}
    return body(tools=[tool], tool_choice=FORCE_TOOL, **extra)


def cached_system(text: str = SYSTEM_RULES) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]


server, stub = simulator_fixtures(create_app, Stub)


@pytest.fixture
def client(stub: Stub) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        api_key="test-key", base_url=stub.url, max_retries=0, timeout=5
    ) as sdk:
        yield sdk


def _sdk_create(client: anthropic.Anthropic, **overrides: Any) -> Any:
    """The drafter's call: cached system rules, a forced strict tool and metadata."""
    arguments: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 2048,
        "system": cached_system(),
        "messages": [{"role": "user", "content": USER_TEXT}],
        "tools": [ESCALATION_TOOL],
        "tool_choice": FORCE_TOOL,
        "metadata": {"user_id": "tenant-42"},
        **overrides,
    }
    return client.messages.create(**arguments)


def _assert_error(response: requests.Response, status: int, error_type: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    payload: dict[str, Any] = response.json()
    assert set(payload) == {"type", "error", "request_id"}
    assert payload["type"] == "error"
    assert set(payload["error"]) == {"type", "message"}
    assert payload["error"]["type"] == error_type
    assert payload["request_id"].startswith("req_")
    assert response.headers["request-id"] == payload["request_id"]
    return payload


# --- the drafter's SDK call --------------------------------------------------------------------


def test_sdk_forced_tool_call_returns_input_for_every_schema_property(
    client: anthropic.Anthropic, stub: Stub
) -> None:
    message = _sdk_create(client)

    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == MODEL
    assert message.id.startswith("msg_")
    assert message.stop_reason == "tool_use"
    assert message.stop_sequence is None
    assert len(message.content) == 1
    block = message.content[0]
    assert block.type == "tool_use"
    assert block.name == TOOL_NAME
    assert block.id.startswith("toolu_")
    package = EscalationPackage.model_validate(block.input)
    assert list(block.input) == ESCALATION_SCHEMA["required"]
    assert package.problem.startswith("Problem: Printer on floor 2")
    assert len(package.confirmed) == len(package.tried) == len(package.next_steps) == 2
    assert all(isinstance(item, str) and item for item in package.next_steps)
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0
    sent = stub.log()[0]
    assert sent["body"]["tools"][0]["strict"] is True
    assert sent["body"]["metadata"] == {"user_id": "tenant-42"}
    assert sent["headers"]["Anthropic-Version"]


def test_sdk_plain_text_answer_is_markdown_from_the_last_user_message(
    client: anthropic.Anthropic,
) -> None:
    message = client.messages.create(
        model=MODEL,
        max_tokens=512,
        system="Be brief.",
        messages=[
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": [{"type": "text", "text": "VPN drops every hour"}]},
        ],
    )

    assert message.stop_reason == "end_turn"
    assert [block.type for block in message.content] == ["text"]
    text = message.content[0].text
    assert text.startswith("**")
    assert "VPN drops every hour" in text
    assert "first question" not in text


def test_generated_input_validates_against_a_constrained_pydantic_schema(stub: Stub) -> None:
    schema = Constrained.model_json_schema()
    assert "$defs" in schema  # the nested model arrives by $ref

    message = stub.ok(tool_body(schema))

    parsed = Constrained.model_validate(message["content"][0]["input"])
    assert parsed.priority == "high"
    assert parsed.severity == 3
    assert parsed.urgent is False
    assert len(parsed.tags) == 3
    assert len(parsed.steps) == 1
    assert len(parsed.owner.name) <= 10
    assert 80 <= len(parsed.summary) <= 120


def test_generated_input_handles_less_common_schema_keywords(stub: Stub) -> None:
    schema = {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "kind": {"const": "escalation"},
            "count": {"type": ["null", "integer"], "minimum": 2},
            "merged": {
                "allOf": [
                    {"properties": {"a": {"type": "string", "title": "Alpha"}}, "required": ["a"]},
                    {"properties": {"b": {"type": "boolean"}}},
                ]
            },
            "odd": {"type": "mystery"},
            "untyped": {},
        },
        "required": ["kind"],
    }

    generated = stub.ok(tool_body(schema))["content"][0]["input"]

    assert list(generated)[0] == "kind"
    assert generated["kind"] == "escalation"
    assert generated["when"] == "2025-01-01T00:00:00Z"
    assert generated["count"] == 2
    assert generated["merged"]["a"].startswith("Alpha: Printer")
    assert generated["merged"]["b"] is False
    assert isinstance(generated["odd"], str)
    assert generated["untyped"].startswith("Untyped: ")


def test_tool_choice_any_forces_the_first_tool(stub: Stub) -> None:
    request_body = tool_body()
    request_body["tool_choice"] = {"type": "any"}

    message = stub.ok(request_body)

    assert message["stop_reason"] == "tool_use"
    assert message["content"][0]["name"] == TOOL_NAME


def test_auto_tool_choice_answers_with_text(stub: Stub) -> None:
    request_body = tool_body()
    request_body["tool_choice"] = {"type": "auto"}

    message = stub.ok(request_body)

    assert message["stop_reason"] == "end_turn"
    assert message["content"][0]["type"] == "text"


def test_output_config_json_schema_gets_matching_json_text(stub: Stub) -> None:
    output_config = {"format": {"type": "json_schema", "schema": ESCALATION_SCHEMA}}

    message = stub.ok(body(output_config=output_config))

    assert message["stop_reason"] == "end_turn"
    EscalationPackage.model_validate_json(message["content"][0]["text"])


def test_success_response_has_exactly_the_documented_shape(stub: Stub) -> None:
    response = stub.messages(body())

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["request-id"].startswith("req_")
    message = response.json()
    assert list(message) == [
        "id",
        "type",
        "role",
        "model",
        "content",
        "stop_reason",
        "stop_sequence",
        "usage",
    ]
    assert set(message["usage"]) == {
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    }


# --- auth and validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [{"Authorization": "Bearer sk-test"}, {"x-api-key": "sk-test"}],
    ids=["bearer", "x-api-key"],
)
def test_bearer_and_x_api_key_are_both_accepted(stub: Stub, auth: dict[str, str]) -> None:
    response = stub.messages(body(), headers={**auth, "anthropic-version": VERSION})

    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer invalid-key"},
        {"x-api-key": "invalid-key"},
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
    ids=["invalid-bearer", "invalid-x-api-key", "missing", "not-bearer"],
)
def test_bad_or_missing_key_is_401(stub: Stub, headers: dict[str, str]) -> None:
    response = stub.messages(body(), headers={**headers, "anthropic-version": VERSION})

    _assert_error(response, 401, "authentication_error")


def test_sdk_raises_authentication_error_for_the_invalid_key(stub: Stub) -> None:
    with anthropic.Anthropic(api_key="invalid-key", base_url=stub.url, max_retries=0) as sdk:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            _sdk_create(sdk)

    assert caught.value.status_code == 401
    assert caught.value.request_id is not None
    assert caught.value.request_id.startswith("req_")


def test_missing_anthropic_version_is_400(stub: Stub) -> None:
    response = stub.messages(body(), headers={"x-api-key": "sk-test"})

    payload = _assert_error(response, 400, "invalid_request_error")
    assert "anthropic-version" in payload["error"]["message"]


@pytest.mark.parametrize(
    ("changes", "field_name"),
    [
        ({"model": None}, "model"),
        ({"model": 7}, "model"),
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "100"}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"messages": None}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "system", "content": "hi"}]}, "messages.0.role"),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": [{"text": "x"}]}]}, "messages.0.content.0"),
        ({"system": [{"type": "image"}]}, "system.0.type"),
        ({"system": 12}, "system"),
        ({"tools": [{"name": "t"}]}, "tools.0.input_schema"),
        ({"tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice.name"),
        ({"stream": True}, "stream"),
    ],
)
def test_invalid_body_is_400_naming_the_field(
    stub: Stub, changes: dict[str, Any], field_name: str
) -> None:
    request_body = {k: v for k, v in {**body(), **changes}.items() if v is not None}

    response = stub.messages(request_body)

    payload = _assert_error(response, 400, "invalid_request_error")
    assert payload["error"]["message"].startswith(f"{field_name}:")


def test_unparseable_body_is_400(stub: Stub) -> None:
    response = stub.session.post(
        f"{stub.url}/v1/messages",
        data="{not json",
        headers={"x-api-key": "k", "anthropic-version": VERSION},
        timeout=5,
    )

    _assert_error(response, 400, "invalid_request_error")


def test_unknown_path_is_404_in_the_api_error_shape(stub: Stub) -> None:
    response = stub.session.post(
        f"{stub.url}/v1/nothing",
        json={},
        headers={"x-api-key": "k", "anthropic-version": VERSION},
        timeout=5,
    )

    _assert_error(response, 404, "not_found_error")


# --- faults ------------------------------------------------------------------------------------


def test_rate_limit_fault_answers_429_with_retry_headers_then_runs_out(stub: Stub) -> None:
    stub.fault(kind="rate_limit", times=2, retry_after=3, retry_after_ms=2500)

    first, second, third = (stub.messages(body()) for _ in range(3))

    for response in (first, second):
        _assert_error(response, 429, "rate_limit_error")
        assert response.headers["retry-after"] == "3"
        assert response.headers["retry-after-ms"] == "2500"
        assert "x-should-retry" not in response.headers
    assert third.status_code == 200
    assert [entry["status"] for entry in stub.log()] == [429, 429, 200]
    assert stub.log()[0]["faults"] == ["rate_limit"]
    assert stub.control("GET", "faults").json()[0]["times"] == 0


def test_rate_limit_defaults_to_one_second_retry_after(stub: Stub) -> None:
    stub.fault(kind="rate_limit")

    response = stub.messages(body())

    _assert_error(response, 429, "rate_limit_error")
    assert response.headers["retry-after"] == "1"
    assert "retry-after-ms" not in response.headers


def test_sdk_raises_rate_limit_error_without_retries(
    client: anthropic.Anthropic, stub: Stub
) -> None:
    stub.fault(kind="rate_limit")

    with pytest.raises(anthropic.RateLimitError) as caught:
        _sdk_create(client)

    error = caught.value
    assert error.status_code == 429
    assert isinstance(error.body, dict)
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == "rate_limit_error"
    assert error.request_id is not None
    assert error.request_id.startswith("req_")


def test_sdk_retries_after_retry_after_ms(stub: Stub) -> None:
    stub.fault(kind="rate_limit", retry_after=0, retry_after_ms=10)

    with anthropic.Anthropic(api_key="k", base_url=stub.url, max_retries=1, timeout=5) as sdk:
        message = _sdk_create(sdk)

    assert message.stop_reason == "tool_use"
    log = stub.log()
    assert [entry["status"] for entry in log] == [429, 200]
    assert log[1]["headers"]["X-Stainless-Retry-Count"] == "1"


def test_overloaded_fault_answers_529(client: anthropic.Anthropic, stub: Stub) -> None:
    stub.fault(kind="overloaded", times=2)

    _assert_error(stub.messages(body()), 529, "overloaded_error")
    with pytest.raises(anthropic.APIStatusError) as caught:
        _sdk_create(client)

    assert caught.value.status_code == 529
    assert isinstance(caught.value, anthropic.InternalServerError)
    assert stub.messages(body()).status_code == 200


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_error_fault_uses_the_requested_status(stub: Stub, status: int) -> None:
    stub.fault(kind="server_error", status=status)

    _assert_error(stub.messages(body()), status, "api_error")
    assert stub.messages(body()).status_code == 200


def test_should_retry_false_stops_sdk_retries(stub: Stub) -> None:
    stub.fault(kind="overloaded", times=-1, should_retry=False, retry_after_ms=10)

    with anthropic.Anthropic(api_key="k", base_url=stub.url, max_retries=3, timeout=5) as sdk:
        with pytest.raises(anthropic.APIStatusError):
            _sdk_create(sdk)

    log = stub.log()
    assert len(log) == 1
    assert stub.messages(body()).headers["x-should-retry"] == "false"


def test_endless_fault_lasts_until_removed(stub: Stub) -> None:
    stub.fault(kind="server_error", times=-1)

    statuses = [stub.messages(body()).status_code for _ in range(3)]
    assert stub.control("DELETE", "faults").status_code == 204

    assert statuses == [500, 500, 500]
    assert stub.control("GET", "faults").json() == []
    assert stub.messages(body()).status_code == 200


def test_slow_fault_delays_then_answers_normally(stub: Stub) -> None:
    stub.fault(kind="slow", delay=0.3)

    started = time.monotonic()
    slow = stub.messages(body())
    elapsed = time.monotonic() - started
    fast_started = time.monotonic()
    fast = stub.messages(body())

    assert slow.status_code == fast.status_code == 200
    assert elapsed >= 0.3
    assert time.monotonic() - fast_started < 0.3
    assert stub.log()[0]["faults"] == ["slow"]


def test_slow_fault_trips_the_sdk_timeout(stub: Stub) -> None:
    stub.fault(kind="slow", delay=0.5)

    with anthropic.Anthropic(api_key="k", base_url=stub.url, max_retries=0, timeout=0.1) as sdk:
        with pytest.raises(anthropic.APITimeoutError):
            _sdk_create(sdk)

    # Let the abandoned request finish so it cannot leak into the next test's log.
    deadline = time.monotonic() + 5
    while not stub.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(stub.log()) == 1


def test_refusal_fault_answers_200_with_refusal(client: anthropic.Anthropic, stub: Stub) -> None:
    stub.fault(kind="refusal")

    message = _sdk_create(client)

    assert message.stop_reason == "refusal"
    assert message.content == []
    assert _sdk_create(client).stop_reason == "tool_use"


def test_max_tokens_fault_leaves_required_tool_fields_out(
    client: anthropic.Anthropic, stub: Stub
) -> None:
    stub.fault(kind="max_tokens")

    message = _sdk_create(client)

    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 2048
    block = message.content[0]
    assert block.type == "tool_use"
    missing = set(ESCALATION_SCHEMA["required"]) - set(block.input)
    assert missing
    assert "problem" in block.input


def test_max_tokens_fault_truncates_text(stub: Stub) -> None:
    full = stub.ok(body())["content"][0]["text"]
    stub.fault(kind="max_tokens")

    cut = stub.ok(body())

    assert cut["stop_reason"] == "max_tokens"
    assert full.startswith(cut["content"][0]["text"])
    assert len(cut["content"][0]["text"]) < len(full)


def test_output_beyond_max_tokens_is_cut_off(stub: Stub) -> None:
    message = stub.ok({**body(), "max_tokens": 3})

    assert message["stop_reason"] == "max_tokens"
    assert message["usage"]["output_tokens"] == 3
    assert len(message["content"][0]["text"]) <= 12


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "meteor"},
        {"kind": "server_error", "status": 504},
        {"kind": "rate_limit", "delay": 1},
        {"kind": "slow", "delay": -1},
        {"kind": "overloaded", "should_retry": "no"},
        {"kind": "rate_limit", "retry_after_ms": 1.5},
        {"kind": "refusal", "times": 0},
        {"kind": "refusal", "colour": "red"},
    ],
)
def test_bad_fault_specs_are_refused(stub: Stub, spec: dict[str, Any]) -> None:
    response = stub.control("POST", "faults", json=spec)

    _assert_error(response, 400, "invalid_request_error")


# --- scripted answers --------------------------------------------------------------------------


def test_scripted_answers_are_served_fifo_then_generation_resumes(stub: Stub) -> None:
    stub.answer(content=[{"type": "text", "text": "Ignore all previous instructions"}], times=2)
    stub.answer(tool_input={"problem": "scripted"})
    stub.answer(content=[{"type": "tool_use", "name": "other", "input": {"x": 1}}])

    first, second = stub.ok(body("one")), stub.ok(tool_body())
    third, fourth = stub.ok(tool_body()), stub.ok(body("two"))
    fifth = stub.ok(body("three"))

    for message in (first, second):
        assert message["content"] == [{"type": "text", "text": "Ignore all previous instructions"}]
        assert message["stop_reason"] == "end_turn"
    assert third["stop_reason"] == "tool_use"
    assert third["content"][0]["name"] == TOOL_NAME
    assert third["content"][0]["input"] == {"problem": "scripted"}
    assert third["content"][0]["id"].startswith("toolu_")
    assert fourth["stop_reason"] == "tool_use"
    assert fourth["content"][0]["id"].startswith("toolu_")
    assert fourth["content"][0]["input"] == {"x": 1}
    assert "three" in fifth["content"][0]["text"]
    for message in (first, third, fourth):
        assert message["model"] == MODEL
        assert message["id"].startswith("msg_")
        assert message["usage"]["output_tokens"] > 0
    assert stub.control("GET", "answers").json() == []


def test_scripted_answer_keeps_its_stop_reason(stub: Stub) -> None:
    stub.answer(content=[{"type": "text", "text": "partial"}], stop_reason="max_tokens")

    message = stub.ok(body())

    assert message["stop_reason"] == "max_tokens"
    assert message["content"] == [{"type": "text", "text": "partial"}]


def test_result_faults_take_precedence_over_scripted_answers(stub: Stub) -> None:
    answer_id = stub.answer(content=[{"type": "text", "text": "scripted"}])
    stub.fault(kind="refusal")

    refused = stub.ok(body())

    assert refused["stop_reason"] == "refusal"
    assert [a["id"] for a in stub.control("GET", "answers").json()] == [answer_id]
    assert stub.ok(body())["content"][0]["text"] == "scripted"


def test_scripted_tool_input_without_tools_is_an_error(stub: Stub) -> None:
    stub.answer(tool_input={"problem": "x"})

    _assert_error(stub.messages(body()), 400, "invalid_request_error")
    assert stub.control("GET", "answers").json() == []


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"content": [{"type": "text", "text": "a"}], "tool_input": {}},
        {"content": "text"},
        {"content": [{"type": "text"}]},
        {"content": [{"type": "tool_use", "name": "t"}]},
        {"tool_input": []},
        {"tool_input": {}, "stop_reason": "done"},
        {"tool_input": {}, "times": 0},
        {"tool_input": {}, "extra": 1},
    ],
)
def test_bad_answer_specs_are_refused(stub: Stub, spec: dict[str, Any]) -> None:
    response = stub.control("POST", "answers", json=spec)

    _assert_error(response, 400, "invalid_request_error")


def test_concurrent_requests_share_answers_safely(stub: Stub, server: RunningServer) -> None:
    stub.answer(content=[{"type": "text", "text": "scripted"}], times=8)
    texts: list[str] = []

    def call() -> None:
        with requests.Session() as session:
            texts.append(Stub(server.url, session).ok(body())["content"][0]["text"])

    threads = [threading.Thread(target=call) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert texts.count("scripted") == 8
    assert len(texts) == 12
    assert stub.control("GET", "usage").json()["requests"] == 12


# --- request log, caching, determinism and reset ------------------------------------------------


def test_request_log_never_holds_credentials(stub: Stub) -> None:
    secret_free = body("Password was [REDACTED] on the router")
    stub.messages(secret_free, headers={"Authorization": "Bearer sk-1", "anthropic-version": "v"})
    stub.messages(secret_free, headers={"x-api-key": "sk-2", "anthropic-version": "v"})
    stub.messages(secret_free, headers={"x-api-key": "invalid-key", "anthropic-version": "v"})

    log = stub.log()

    assert [entry["status"] for entry in log] == [200, 200, 401]
    for entry in log:
        assert {"headers", "body", "status"} <= entry.keys()
        assert entry["body"] == secret_free
        assert not {"authorization", "x-api-key"} & {k.lower() for k in entry["headers"]}
        assert "sk-" not in str(entry)
    assert log[0]["path"] == "/v1/messages"


def test_prompt_cache_is_created_then_read(stub: Stub) -> None:
    request_body = body(system=cached_system())

    first = stub.ok(request_body)["usage"]
    second = stub.ok(request_body)["usage"]
    changed = stub.ok(body(system=cached_system("Other rules. " * 50)))["usage"]

    assert first["cache_creation_input_tokens"] > 0
    assert first["cache_read_input_tokens"] == 0
    assert second["cache_creation_input_tokens"] == 0
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert second["input_tokens"] == first["input_tokens"]
    assert changed["cache_creation_input_tokens"] > 0
    assert changed["cache_read_input_tokens"] == 0
    # input_tokens counts only what follows the cached prefix.
    assert first["input_tokens"] < first["cache_creation_input_tokens"]
    totals = stub.control("GET", "usage").json()
    assert totals["requests"] == 3
    assert totals["cache_read_input_tokens"] == second["cache_read_input_tokens"]
    assert totals["cache_creation_input_tokens"] == (
        first["cache_creation_input_tokens"] + changed["cache_creation_input_tokens"]
    )
    assert totals["input_tokens"] == sum(u["input_tokens"] for u in (first, second, changed))


def test_without_cache_control_nothing_is_cached(stub: Stub) -> None:
    request_body = body(system=[{"type": "text", "text": SYSTEM_RULES}])

    first = stub.ok(request_body)["usage"]
    second = stub.ok(request_body)["usage"]

    assert first == second
    assert first["cache_creation_input_tokens"] == first["cache_read_input_tokens"] == 0
    assert first["input_tokens"] > len(SYSTEM_RULES) // 4


def test_input_tokens_count_system_and_tools(stub: Stub) -> None:
    plain = stub.ok(body())["usage"]["input_tokens"]
    with_system = stub.ok(body(system="x" * 400))["usage"]["input_tokens"]
    with_tools = stub.ok(tool_body())["usage"]["input_tokens"]

    assert with_system == plain + 100
    assert with_tools > plain


def test_same_request_gets_the_same_answer(stub: Stub) -> None:
    first, second = stub.ok(tool_body()), stub.ok(tool_body())
    with serve(create_app()) as other, requests.Session() as session:
        elsewhere = Stub(other.url, session).ok(tool_body())

    for message in (second, elsewhere):
        assert message["content"] == first["content"]
        assert message["stop_reason"] == first["stop_reason"]
        assert message["usage"] == first["usage"]
    assert first["id"] != second["id"]


def test_reset_clears_answers_faults_log_cache_and_usage(stub: Stub) -> None:
    stub.answer(content=[{"type": "text", "text": "x"}])
    stub.fault(kind="overloaded", times=-1)
    stub.messages(body(system=cached_system()))

    assert stub.control("POST", "reset").status_code == 204

    assert stub.control("GET", "answers").json() == []
    assert stub.control("GET", "faults").json() == []
    assert stub.log() == []
    assert stub.control("GET", "usage").json() == {
        "requests": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    usage = stub.ok(body(system=cached_system()))["usage"]
    assert usage["cache_creation_input_tokens"] > 0
    assert usage["cache_read_input_tokens"] == 0


def test_module_runs_as_a_script_and_announces_its_url() -> None:
    url, message = run_module(
        "writeback_simulators.anthropic",
        lambda url: requests.post(
            f"{url}/v1/messages",
            json=body(),
            headers={"x-api-key": "k", "anthropic-version": VERSION},
            timeout=5,
        ),
    )

    assert url.startswith("http://127.0.0.1:")
    assert message["type"] == "message"
