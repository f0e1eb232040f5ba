"""Local stub of the Anthropic Messages API over real HTTP, with scripted answers and faults.

Stands in for `https://api.anthropic.com` (point the SDK's `base_url` or `ANTHROPIC_BASE_URL`
at it); shapes follow the Messages API as the official SDK 2.x sees it.

Vendor endpoint `POST /v1/messages`:
  auth       `Authorization: Bearer <key>` (SDK 2.x) or `x-api-key: <key>`; any non-empty key
             but `invalid-key`, else 401 authentication_error. `anthropic-version` header
             required (any value), else 400 invalid_request_error.
  body       `model` (non-empty string), `max_tokens` (int >= 1), `messages` (non-empty list of
             {role: user|assistant, content: string | [blocks]}); `system` string or text blocks;
             `tools` list of named tools; `tool_choice` auto|any|none|tool (a forced tool must be
             in `tools`); `stream: true` is refused. Other fields are accepted and ignored.
             Failures answer 400 invalid_request_error naming the field ("max_tokens: ...").
  answer     (first match wins) a `refusal`/`max_tokens` fault; else the next scripted answer;
             else generated: a forced tool (`tool_choice` tool, or `any` = first tool) gets a
             tool_use block whose input fills the tool's `input_schema`; an
             `output_config.format` json_schema gets that JSON as text; otherwise a markdown
             paragraph built from the last user message. Generated output longer than
             `max_tokens` is truncated with stop_reason `max_tokens`, as the real API does.
  usage      ceil(chars / 4) per request part (tools, system blocks, message blocks) for input,
             of the produced content for output (`max_tokens` when cut off). Prompt caching: the
             prefix (model, tools, system, messages) up to each block with `cache_control` is
             cached; the longest prefix seen before is reported as `cache_read_input_tokens`, the
             rest up to the last breakpoint as `cache_creation_input_tokens`, and `input_tokens`
             counts only what follows (so the three add up to the whole prompt).

Control API (no auth, JSON; errors use the vendor error shape):
  POST   /__sim/reset      clear answers, faults, request log, prompt cache and usage; 204
  POST   /__sim/answers    {"content": [blocks] | "tool_input": {...}, "stop_reason"?, "times"?}
                           -> 201 answer (with "id"); FIFO, each used for `times` requests
                           (default 1, -1 = until cleared). `tool_input` becomes a tool_use block
                           for the tool the answered request forces (else its first tool; a
                           request without tools gets a 400). Blocks are returned verbatim; a
                           tool_use block without "id" gets one. stop_reason defaults to
                           tool_use when the answer holds a tool_use block, else end_turn.
  GET    /__sim/answers    queued answers, "times" = uses left
  DELETE /__sim/answers    drop queued answers; 204
  POST   /__sim/faults     {"kind", "times"? (default 1, -1 = until removed), kind params}
                           -> 201 fault (with "id")
  GET    /__sim/faults     faults in creation order, "times" = matches left
  DELETE /__sim/faults     remove all faults; 204
  GET    /__sim/requests   vendor-call log, oldest first (last 10,000): headers (never
                           Authorization, x-api-key or Cookie), body (JSON or null), status,
                           method, path, faults (kinds applied)
  GET    /__sim/usage      totals over 200 answers: requests, input_tokens, output_tokens,
                           cache_creation_input_tokens, cache_read_input_tokens

Fault kinds (checked after auth and validation, in creation order; each match uses one of
`times`):
  slow {"delay": s=1.0}                sleep, then answer (combines with the kinds below)
  rate_limit {"retry_after": s=1,      429 rate_limit_error with `retry-after` (and
              "retry_after_ms"?}       `retry-after-ms` when given)
  overloaded                           529 overloaded_error
  server_error {"status": 500}         500/502/503 api_error
  refusal                              200, stop_reason refusal, empty content
  max_tokens                           200, stop_reason max_tokens, truncated text or a tool_use
                                       block missing required input fields
The three error kinds also take "retry_after"/"retry_after_ms" (headers) and "should_retry"
(bool -> `x-should-retry` header).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from writeback_simulators.faults import (
    ControlError,
    RequestLog,
    control_body,
    is_vendor_call,
    parse_times,
)
from writeback_simulators.server import run_cli

logger = logging.getLogger(__name__)

Json = dict[str, Any]

INVALID_KEY = "invalid-key"
_EXTENSION = "anthropic_stub"
_REQUEST_LOG_LIMIT = 10_000
_HIDDEN_HEADERS = frozenset({"authorization", "x-api-key", "cookie"})
_CHARS_PER_TOKEN = 4
_SNIPPET_WORDS = 12
_PARAGRAPH_WORDS = 40
_MAX_SCHEMA_DEPTH = 32
_STOP_REASONS = frozenset({"end_turn", "tool_use", "max_tokens", "refusal"})
_ROLES = ("user", "assistant")
_TOOL_CHOICES = frozenset({"auto", "any", "tool", "none"})

_DELAY_KINDS = frozenset({"slow"})
_ERROR_KINDS = frozenset({"rate_limit", "overloaded", "server_error"})
_RESULT_KINDS = frozenset({"refusal", "max_tokens"})
_FAULT_KINDS = _DELAY_KINDS | _ERROR_KINDS | _RESULT_KINDS
_ERROR_PARAMS = frozenset({"retry_after", "retry_after_ms", "should_retry"})
# Parameters each fault kind takes, and the defaults filled in when omitted.
_FAULT_PARAMS: dict[str, frozenset[str]] = {
    "slow": frozenset({"delay"}),
    "rate_limit": _ERROR_PARAMS,
    "overloaded": _ERROR_PARAMS,
    "server_error": _ERROR_PARAMS | {"status"},
    "refusal": frozenset(),
    "max_tokens": frozenset(),
}
_FAULT_DEFAULTS: dict[str, Json] = {
    "slow": {"delay": 1.0},
    "rate_limit": {"retry_after": 1},
    "server_error": {"status": 500},
}
_ALL_FAULT_PARAMS = frozenset(name for names in _FAULT_PARAMS.values() for name in names)
_SERVER_ERROR_STATUSES = frozenset({500, 502, 503})
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
# Values for string formats a caller's validator is likely to check.
_FORMAT_EXAMPLES = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


class ApiError(Exception):
    """An error answered with Anthropic's error body."""

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = dict(headers or {})


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message)


def _field_error(path: str, message: str) -> ApiError:
    return _invalid(f"{path}: {message}")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _tokens(chars: int) -> int:
    return math.ceil(chars / _CHARS_PER_TOKEN)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- state -----------------------------------------------------------------------------------


@dataclass
class Fault:
    id: int
    kind: str
    times: int
    params: Json = field(default_factory=dict)

    def to_json(self) -> Json:
        return {"id": self.id, "kind": self.kind, "times": self.times, **self.params}


@dataclass
class Answer:
    """A scripted answer: verbatim `content`, or `tool_input` for the forced tool."""

    id: int
    times: int
    stop_reason: str | None
    content: list[Json] | None = None
    tool_input: Json | None = None

    def to_json(self) -> Json:
        body: Json = {"id": self.id, "times": self.times, "stop_reason": self.stop_reason}
        if self.content is not None:
            body["content"] = self.content
        if self.tool_input is not None:
            body["tool_input"] = self.tool_input
        return body


_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


class StubState:
    """All stub state; every public method takes the lock (the server is threaded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Ids never restart, so a stale id from an earlier test never names a new record.
        self._next_id = 1
        self.requests = RequestLog(_REQUEST_LOG_LIMIT)
        self._clear()

    def _clear(self) -> None:
        self._answers: deque[Answer] = deque()
        self._faults: list[Fault] = []
        self.requests.clear()
        self._cached_prefixes: set[str] = set()
        self._usage: Json = {"requests": 0, **dict.fromkeys(_USAGE_FIELDS, 0)}

    def reset(self) -> None:
        with self._lock:
            self._clear()

    def _new_id(self) -> int:
        new_id = self._next_id
        self._next_id += 1
        return new_id

    # Scripted answers.

    def add_answer(
        self,
        times: int,
        stop_reason: str | None,
        content: list[Json] | None,
        tool_input: Json | None,
    ) -> Json:
        with self._lock:
            answer = Answer(self._new_id(), times, stop_reason, content, tool_input)
            self._answers.append(answer)
            return answer.to_json()

    def answers(self) -> list[Json]:
        with self._lock:
            return [a.to_json() for a in self._answers]

    def clear_answers(self) -> None:
        with self._lock:
            self._answers.clear()

    def take_answer(self) -> Answer | None:
        """The answer at the head of the queue, using up one of its `times`."""
        with self._lock:
            if not self._answers:
                return None
            answer = self._answers[0]
            if answer.times > 0:
                answer.times -= 1
                if answer.times == 0:
                    self._answers.popleft()
            logger.info("Serving scripted answer %s", answer.id)
            return copy.deepcopy(answer)

    # Faults.

    def add_fault(self, kind: str, times: int, params: Json) -> Json:
        with self._lock:
            fault = Fault(self._new_id(), kind, times, params)
            self._faults.append(fault)
            return fault.to_json()

    def faults(self) -> list[Json]:
        with self._lock:
            return [f.to_json() for f in self._faults]

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = []

    def take_fault(self, kinds: frozenset[str]) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times != 0 and fault.kind in kinds:
                    if fault.times > 0:
                        fault.times -= 1
                    logger.info("Injecting fault %s (%s)", fault.id, fault.kind)
                    return copy.deepcopy(fault)
            return None

    # Prompt cache and usage.

    def cache_usage(self, prefixes: Sequence[tuple[str, int]]) -> tuple[int, int]:
        """(creation, read) tokens for breakpoint prefixes (shortest first); caches them all."""
        with self._lock:
            read = max((t for key, t in prefixes if key in self._cached_prefixes), default=0)
            longest = prefixes[-1][1] if prefixes else 0
            self._cached_prefixes.update(key for key, _ in prefixes)
            return longest - read, read

    def add_usage(self, usage: Mapping[str, int]) -> None:
        with self._lock:
            self._usage["requests"] += 1
            for name in _USAGE_FIELDS:
                self._usage[name] += usage[name]

    def usage(self) -> Json:
        with self._lock:
            return dict(self._usage)


# --- request validation ----------------------------------------------------------------------


@dataclass(frozen=True)
class MessagesRequest:
    """A validated `POST /v1/messages` body."""

    model: str
    max_tokens: int
    messages: list[Json]
    system: list[Json]
    tools: list[Json]
    forced_tool: Json | None
    output_schema: Json | None


def parse_request(body: Any) -> MessagesRequest:
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object")
    if body.get("stream") is True:
        raise _field_error("stream", "streaming is not supported by the local stub")
    model = _required(body, "model")
    if not isinstance(model, str) or not model:
        raise _field_error("model", "Input should be a non-empty string")
    max_tokens = _required(body, "max_tokens")
    if not _is_int(max_tokens):
        raise _field_error("max_tokens", "Input should be a valid integer")
    if max_tokens < 1:
        raise _field_error("max_tokens", "Input should be greater than or equal to 1")
    tools = _tools(body.get("tools"))
    return MessagesRequest(
        model=model,
        max_tokens=max_tokens,
        messages=_messages(_required(body, "messages")),
        system=_system(body.get("system")),
        tools=tools,
        forced_tool=_forced_tool(body.get("tool_choice"), tools),
        output_schema=_output_schema(body.get("output_config")),
    )


def _required(body: Json, name: str) -> Any:
    if name not in body or body[name] is None:
        raise _field_error(name, "Field required")
    return body[name]


def _messages(messages: Any) -> list[Json]:
    if not isinstance(messages, list):
        raise _field_error("messages", "Input should be a valid list")
    if not messages:
        raise _field_error("messages", "at least one message is required")
    for index, message in enumerate(messages):
        path = f"messages.{index}"
        if not isinstance(message, dict):
            raise _field_error(path, "Input should be a valid dictionary")
        if message.get("role") not in _ROLES:
            raise _field_error(f"{path}.role", "Input should be 'user' or 'assistant'")
        content = _required_at(message, "content", path)
        if not isinstance(content, str):
            _blocks(content, f"{path}.content")
    return messages


def _required_at(body: Json, name: str, path: str) -> Any:
    if name not in body or body[name] is None:
        raise _field_error(f"{path}.{name}", "Field required")
    return body[name]


def _blocks(blocks: Any, path: str) -> list[Json]:
    if not isinstance(blocks, list):
        raise _field_error(path, "Input should be a valid string or list of content blocks")
    for index, block in enumerate(blocks):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _field_error(f"{path}.{index}", "Input should be a content block with a type")
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            raise _field_error(f"{path}.{index}.text", "Input should be a valid string")
    return blocks


def _system(system: Any) -> list[Json]:
    """The system prompt as text blocks (a plain string becomes one block)."""
    if system is None:
        return []
    if isinstance(system, str):
        return [{"type": "text", "text": system}]
    blocks = _blocks(system, "system")
    for index, block in enumerate(blocks):
        if block["type"] != "text":
            raise _field_error(f"system.{index}.type", "Input should be 'text'")
    return blocks


def _tools(tools: Any) -> list[Json]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise _field_error("tools", "Input should be a valid list")
    for index, tool in enumerate(tools):
        path = f"tools.{index}"
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise _field_error(f"{path}.name", "Field required")
        # Server tools (web search, ...) carry a versioned `type` and no schema.
        if tool.get("type", "custom") == "custom" and not isinstance(
            tool.get("input_schema"), dict
        ):
            raise _field_error(f"{path}.input_schema", "Field required")
    return tools


def _forced_tool(choice: Any, tools: list[Json]) -> Json | None:
    """The tool the request obliges the model to call, if any."""
    if choice is None:
        return None
    if not isinstance(choice, dict) or choice.get("type") not in _TOOL_CHOICES:
        raise _field_error("tool_choice.type", "Input should be 'auto', 'any', 'tool' or 'none'")
    if choice["type"] == "any":
        if not tools:
            raise _field_error("tool_choice", "tool_choice 'any' needs at least one tool")
        return tools[0]
    if choice["type"] != "tool":
        return None
    name = choice.get("name")
    for tool in tools:
        if tool["name"] == name:
            return tool
    raise _field_error("tool_choice.name", f"Tool {name!r} not found in tools")


def _output_schema(config: Any) -> Json | None:
    fmt = config.get("format") if isinstance(config, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise _field_error("output_config.format.schema", "Field required")
        return schema
    return None


# --- token estimates and prompt caching --------------------------------------------------------


def _block_chars(block: Any) -> int:
    if isinstance(block, str):
        return len(block)
    if block.get("type") == "text":
        return len(block["text"])
    return len(_canonical({k: v for k, v in block.items() if k != "cache_control"}))


def _prompt_parts(req: MessagesRequest) -> Iterable[tuple[str, int, bool]]:
    """(identity, tokens, is cache breakpoint) for each part, in the API's cache order."""
    yield _canonical(req.model), 0, False
    for tool in req.tools:
        yield _canonical(tool), _tokens(_block_chars(tool)), "cache_control" in tool
    for block in req.system:
        yield _canonical(block), _tokens(_block_chars(block)), "cache_control" in block
    for message in req.messages:
        content = message["content"]
        for item in [content] if isinstance(content, str) else content:
            part = _canonical([message["role"], item])
            breakpoint_ = isinstance(item, dict) and "cache_control" in item
            yield part, _tokens(_block_chars(item)), breakpoint_


def input_usage(state: StubState, req: MessagesRequest) -> tuple[int, int, int]:
    """(input, cache creation, cache read) tokens; the three add up to the whole prompt."""
    digest = hashlib.sha256()
    total = 0
    prefixes: list[tuple[str, int]] = []
    for part, tokens, is_breakpoint in _prompt_parts(req):
        digest.update(part.encode())
        digest.update(b"\x00")
        total += tokens
        if is_breakpoint:
            prefixes.append((digest.hexdigest(), total))
    creation, read = state.cache_usage(prefixes)
    return total - creation - read, creation, read


def output_tokens(content: list[Json]) -> int:
    chars = 0
    for block in content:
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            chars += len(block["text"])
        elif block.get("type") == "tool_use":
            chars += len(str(block.get("name", ""))) + len(_canonical(block.get("input")))
        else:
            chars += len(_canonical(block))
    # A real answer always costs at least one token, even an empty one.
    return max(1, _tokens(chars))


# --- content generation ------------------------------------------------------------------------


def last_user_text(messages: list[Json]) -> str:
    """The text of the last user turn (text blocks and tool results), whitespace collapsed."""
    for message in reversed(messages):
        if message["role"] == "user":
            return " ".join(_texts(message["content"]).split())
    return ""


def _texts(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts: list[str] = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif isinstance(block, dict) and block.get("type") == "tool_result":
            parts.append(_texts(block.get("content")))
    return " ".join(parts)


def _words(text: str, count: int) -> str:
    return " ".join(text.split()[:count]) or "no details given"


def _humanise(name: str) -> str:
    words = name.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:] if words else "Value"


class SchemaFiller:
    """Builds a value that validates against a (simple) JSON Schema, from a conversation snippet.

    Objects get every property (required first), strings "<label>: <snippet>", arrays two items
    (within minItems/maxItems), numbers their minimum or 0, booleans false, enums their first
    value. Local `$ref`s, `anyOf`/`oneOf` (first non-null option) and `allOf` are followed.
    """

    def __init__(self, root: Json, snippet: str) -> None:
        self._root = root
        self._snippet = snippet

    def fill(self) -> Any:
        return self.value(self._root, "Value")

    def value(self, schema: Any, label: str, index: int = 0, depth: int = 0) -> Any:
        if not isinstance(schema, dict) or depth > _MAX_SCHEMA_DEPTH:
            return self._string({}, label, index)
        schema = self._resolve(schema, depth)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                options = [o for o in schema[key] if not _is_null_schema(o)]
                return self.value((options or schema[key])[0], label, index, depth + 1)
        fillers = self._fillers()
        # Unknown types get a string: the likeliest thing a loose schema accepts.
        filler = fillers.get(_schema_type(schema), fillers["string"])
        return filler(schema, label, index, depth)

    def _fillers(self) -> dict[str, Callable[[Json, str, int, int], Any]]:
        return {
            "object": self._object,
            "array": self._array,
            "string": lambda s, label, i, _d: self._string(s, label, i),
            "integer": lambda s, _label, i, _d: _bounded(s, i, integer=True),
            "number": lambda s, _label, i, _d: _bounded(s, i, integer=False),
            "boolean": lambda _s, _label, _i, _d: False,
            "null": lambda _s, _label, _i, _d: None,
        }

    def _resolve(self, schema: Json, depth: int) -> Json:
        """Follow a local `$ref` and merge `allOf` parts into one schema."""
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#") and depth <= _MAX_SCHEMA_DEPTH:
            target: Any = self._root
            for part in filter(None, ref[1:].split("/")):
                key = part.replace("~1", "/").replace("~0", "~")
                target = target.get(key) if isinstance(target, dict) else None
            if isinstance(target, dict):
                merged = {k: v for k, v in schema.items() if k != "$ref"}
                return self._resolve({**target, **merged}, depth + 1)
        parts = schema.get("allOf")
        if isinstance(parts, list) and parts:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in parts:
                if isinstance(part, dict):
                    merged = _merge_schemas(merged, self._resolve(part, depth + 1))
            return merged
        return schema

    def _object(self, schema: Json, _title: str, _index: int, depth: int) -> Json:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        declared = schema.get("required")
        required = [n for n in declared if isinstance(n, str)] if isinstance(declared, list) else []
        names = required + [n for n in properties if n not in required]
        result: Json = {}
        for name in names:
            prop = properties.get(name, {})
            title = prop.get("title") if isinstance(prop, dict) else None
            label = title if isinstance(title, str) and title else _humanise(name)
            result[name] = self.value(prop, label, 0, depth + 1)
        return result

    def _array(self, schema: Json, label: str, _index: int, depth: int) -> list[Any]:
        count = 2
        if _is_int(schema.get("minItems")):
            count = max(count, schema["minItems"])
        if _is_int(schema.get("maxItems")):
            count = min(count, schema["maxItems"])
        items = schema.get("items", {})
        # Item numbers start at 1 so every string item differs (uniqueItems holds).
        return [self.value(items, label, i + 1, depth + 1) for i in range(count)]

    def _string(self, schema: Json, label: str, index: int) -> str:
        example = _FORMAT_EXAMPLES.get(str(schema.get("format", "")))
        if example is None:
            name = f"{label} {index}" if index else label
            example = f"{name}: {self._snippet}"
        if _is_int(schema.get("maxLength")):
            example = example[: schema["maxLength"]]
        if _is_int(schema.get("minLength")) and len(example) < schema["minLength"]:
            example = example.ljust(schema["minLength"], ".")
        return example


def _is_null_schema(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null"


def _schema_type(schema: Json) -> str:
    declared = schema.get("type")
    if isinstance(declared, list):
        declared = next((t for t in declared if t != "null"), "null")
    if isinstance(declared, str):
        return declared
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _merge_schemas(base: Json, extra: Json) -> Json:
    merged = {**base, **extra}
    if isinstance(base.get("properties"), dict) and isinstance(extra.get("properties"), dict):
        merged["properties"] = {**base["properties"], **extra["properties"]}
    if isinstance(base.get("required"), list) and isinstance(extra.get("required"), list):
        merged["required"] = base["required"] + [
            n for n in extra["required"] if n not in base["required"]
        ]
    return merged


def _bounded(schema: Json, index: int, integer: bool) -> int | float:
    """0 (plus the item index, for distinct array items), kept within the schema's bounds."""
    low: float = 0
    if _is_number(schema.get("minimum")):
        low = max(low, schema["minimum"])
    if _is_number(schema.get("exclusiveMinimum")):
        low = max(low, schema["exclusiveMinimum"] + 1)
    value = low + index
    if _is_number(schema.get("maximum")):
        value = min(value, schema["maximum"])
    return math.ceil(value) if integer else value


def tool_use_block(name: str, tool_input: Any) -> Json:
    # The id depends only on the call, so the same request gets the same answer.
    digest = hashlib.sha256(_canonical([name, tool_input]).encode()).hexdigest()
    return {"type": "tool_use", "id": f"toolu_{digest[:24]}", "name": name, "input": tool_input}


def generated_content(req: MessagesRequest) -> tuple[list[Json], str]:
    text = last_user_text(req.messages)
    snippet = _words(text, _SNIPPET_WORDS)
    if req.forced_tool is not None:
        schema = req.forced_tool.get("input_schema") or {"type": "object"}
        tool_input = SchemaFiller(schema, snippet).fill()
        return [tool_use_block(req.forced_tool["name"], tool_input)], "tool_use"
    if req.output_schema is not None:
        document = SchemaFiller(req.output_schema, snippet).fill()
        return [{"type": "text", "text": json.dumps(document)}], "end_turn"
    paragraph = f"**Summary.** The request concerns: {_words(text, _PARAGRAPH_WORDS)}."
    return [{"type": "text", "text": paragraph}], "end_turn"


def truncated(content: list[Json], max_tokens: int) -> list[Json]:
    """What an answer cut off by `max_tokens` looks like: short text, or missing tool fields."""
    cut: list[Json] = []
    for block in content:
        if block["type"] == "text":
            limit = min(len(block["text"]) // 2, max_tokens * _CHARS_PER_TOKEN)
            cut.append({**block, "text": block["text"][:limit]})
        elif block["type"] == "tool_use" and isinstance(block["input"], dict):
            names = list(block["input"])
            # Required properties come first, so keeping half of them leaves one out.
            kept = names[: len(names) // 2]
            cut.append({**block, "input": {n: block["input"][n] for n in kept}})
        else:
            cut.append(block)
    return cut


def scripted_content(req: MessagesRequest, answer: Answer) -> tuple[list[Json], str]:
    if answer.tool_input is not None:
        tool = req.forced_tool or (req.tools[0] if req.tools else None)
        if tool is None:
            raise _invalid(
                f"Scripted answer {answer.id} has tool_input but the request has no tools"
            )
        content = [tool_use_block(tool["name"], answer.tool_input)]
    else:
        content = [_with_id(block) for block in answer.content or []]
    has_tool_use = any(block.get("type") == "tool_use" for block in content)
    default_stop = "tool_use" if has_tool_use else "end_turn"
    return content, answer.stop_reason or default_stop


def _with_id(block: Json) -> Json:
    if block.get("type") == "tool_use" and "id" not in block:
        return tool_use_block(block["name"], block["input"])
    return block


def faulted_content(req: MessagesRequest, kind: str) -> tuple[list[Json], str]:
    if kind == "refusal":
        return [], "refusal"
    content, _ = generated_content(req)
    return truncated(content, req.max_tokens), "max_tokens"


# --- vendor endpoint ---------------------------------------------------------------------------


def create_message() -> Response:
    req = parse_request(_json_body())
    _apply_request_faults()
    state = _state()
    result_fault = state.take_fault(_RESULT_KINDS)
    answer = state.take_answer() if result_fault is None else None
    if result_fault is not None:
        g.faults.append(result_fault.kind)
        content, stop_reason = faulted_content(req, result_fault.kind)
    elif answer is not None:
        content, stop_reason = scripted_content(req, answer)
    else:
        content, stop_reason = generated_content(req)
        if output_tokens(content) > req.max_tokens:
            content, stop_reason = truncated(content, req.max_tokens), "max_tokens"
    input_tokens, creation, read = input_usage(state, req)
    usage = {
        "input_tokens": input_tokens,
        "output_tokens": req.max_tokens if stop_reason == "max_tokens" else output_tokens(content),
        "cache_creation_input_tokens": creation,
        "cache_read_input_tokens": read,
    }
    state.add_usage(usage)
    return jsonify(
        {
            "id": f"msg_{uuid.uuid4().hex}",
            "type": "message",
            "role": "assistant",
            "model": req.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
    )


def _apply_request_faults() -> None:
    """Apply a `slow` fault, then fail the call if an error fault matches."""
    state = _state()
    slow = state.take_fault(_DELAY_KINDS)
    if slow is not None:
        g.faults.append(slow.kind)
        time.sleep(float(slow.params["delay"]))
    failure = state.take_fault(_ERROR_KINDS)
    if failure is not None:
        g.faults.append(failure.kind)
        raise _fault_error(failure)


def _fault_error(fault: Fault) -> ApiError:
    params = fault.params
    headers: dict[str, str] = {}
    if "retry_after" in params:
        headers["retry-after"] = _number_text(params["retry_after"])
    if "retry_after_ms" in params:
        headers["retry-after-ms"] = _number_text(params["retry_after_ms"])
    if "should_retry" in params:
        headers["x-should-retry"] = "true" if params["should_retry"] else "false"
    if fault.kind == "rate_limit":
        message = "Number of requests has exceeded your rate limit (simulated)"
        return ApiError(429, "rate_limit_error", message, headers)
    if fault.kind == "overloaded":
        return ApiError(529, "overloaded_error", "Overloaded", headers)
    return ApiError(int(params["status"]), "api_error", "Internal server error", headers)


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _authenticate() -> None:
    """Key, then `anthropic-version`, for every vendor call."""
    if not is_vendor_call():
        return
    authorization = request.headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    key = token.strip() if scheme.lower() == "bearer" else ""
    key = key or request.headers.get("x-api-key", "").strip()
    if not key:
        raise ApiError(401, "authentication_error", "x-api-key header is required")
    if key == INVALID_KEY:
        raise ApiError(401, "authentication_error", "invalid x-api-key")
    if not request.headers.get("anthropic-version", "").strip():
        raise _invalid("anthropic-version: header is required")


# --- control endpoints -------------------------------------------------------------------------


def reset() -> tuple[str, int]:
    _state().reset()
    return "", 204


def create_answer() -> tuple[Response, int]:
    # A body that is not JSON gets the vendor's answer (`_json_body`), as on /v1/messages.
    body = control_body(frozenset({"content", "tool_input", "stop_reason", "times"}), _json_body)
    content, tool_input = body.get("content"), body.get("tool_input")
    if (content is None) == (tool_input is None):
        raise ControlError("Give exactly one of content or tool_input")
    if content is not None:
        content = _answer_blocks(content)
    if tool_input is not None and not isinstance(tool_input, dict):
        raise ControlError("tool_input must be an object")
    stop_reason = body.get("stop_reason")
    if stop_reason is not None and stop_reason not in _STOP_REASONS:
        raise ControlError(f"stop_reason must be one of {', '.join(sorted(_STOP_REASONS))}")
    answer = _state().add_answer(parse_times(body), stop_reason, content, tool_input)
    return jsonify(answer), 201


def _answer_blocks(content: Any) -> list[Json]:
    if not isinstance(content, list):
        raise ControlError("content must be a list of content blocks")
    for index, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise ControlError(f"content.{index} must be an object with a type")
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            raise ControlError(f"content.{index}.text must be a string")
        if block["type"] == "tool_use" and (
            not isinstance(block.get("name"), str) or not isinstance(block.get("input"), dict)
        ):
            raise ControlError(f"content.{index} tool_use blocks need a name and an input object")
    return content


def list_answers() -> Response:
    return jsonify(_state().answers())


def clear_answers() -> tuple[str, int]:
    _state().clear_answers()
    return "", 204


def create_fault() -> tuple[Response, int]:
    body = control_body(frozenset({"kind", "times"}) | _ALL_FAULT_PARAMS, _json_body)
    kind = body.get("kind")
    if kind not in _FAULT_KINDS:
        raise ControlError(f"kind must be one of {', '.join(sorted(_FAULT_KINDS))}")
    misplaced = (_ALL_FAULT_PARAMS - _FAULT_PARAMS[kind]) & body.keys()
    if misplaced:
        raise ControlError(f"{kind} faults take no {', '.join(sorted(misplaced))}")
    params = {
        **_FAULT_DEFAULTS.get(kind, {}),
        **{k: body[k] for k in _FAULT_PARAMS[kind] & body.keys()},
    }
    for name, value in params.items():
        _check_fault_param(name, value)
    return jsonify(_state().add_fault(kind, parse_times(body), params)), 201


def _check_fault_param(name: str, value: Any) -> None:
    if name == "should_retry":
        if not isinstance(value, bool):
            raise ControlError("should_retry must be true or false")
    elif not _is_number(value) or value < 0:
        raise ControlError(f"{name} must be a number >= 0")
    elif name == "status" and value not in _SERVER_ERROR_STATUSES:
        raise ControlError(f"status must be one of {sorted(_SERVER_ERROR_STATUSES)}")
    elif name == "retry_after_ms" and not _is_int(value):
        raise ControlError("retry_after_ms must be a whole number of milliseconds")
    elif name == "delay" and value > 60:
        raise ControlError("delay must be between 0 and 60 seconds")


def list_faults() -> Response:
    return jsonify(_state().faults())


def clear_faults() -> tuple[str, int]:
    _state().clear_faults()
    return "", 204


def list_requests() -> Response:
    return jsonify(_state().requests.entries())


def get_usage() -> Response:
    return jsonify(_state().usage())


# --- request plumbing --------------------------------------------------------------------------


def _state() -> StubState:
    state: StubState = current_app.extensions[_EXTENSION]
    return state


def _json_body() -> Any:
    body = request.get_json(force=True, silent=True)
    if body is None:
        raise _invalid("The request body is not valid JSON")
    return body


def _begin_request() -> None:
    g.request_id = f"req_{uuid.uuid4().hex}"
    g.faults = []


def _error_response(error: ApiError) -> Response:
    body = {
        "type": "error",
        "error": {"type": error.error_type, "message": error.message},
        "request_id": g.get("request_id") or f"req_{uuid.uuid4().hex}",
    }
    response = jsonify(body)
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


def _control_error(error: ControlError) -> Response:
    return _error_response(ApiError(error.status, _ERROR_TYPES[error.status], error.message))


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    error_type = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    # Keep headers such as a 405's Allow; the body is ours.
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    message = error.description or error.name or "Error"
    return _error_response(ApiError(status, error_type, message, headers))


def _finish_request(response: Response) -> Response:
    if "request_id" in g:
        response.headers["request-id"] = g.request_id
    if is_vendor_call():
        _state().requests.record(
            {
                "headers": {
                    k: v for k, v in request.headers.items() if k.lower() not in _HIDDEN_HEADERS
                },
                "body": request.get_json(force=True, silent=True),
                "status": response.status_code,
                "method": request.method,
                "path": request.path,
                "faults": list(g.get("faults", [])),
            }
        )
    return response


# --- app factory -------------------------------------------------------------------------------

_ROUTES: tuple[tuple[str, Callable[..., Any], tuple[str, ...]], ...] = (
    ("/v1/messages", create_message, ("POST",)),
    ("/__sim/reset", reset, ("POST",)),
    ("/__sim/answers", create_answer, ("POST",)),
    ("/__sim/answers", list_answers, ("GET",)),
    ("/__sim/answers", clear_answers, ("DELETE",)),
    ("/__sim/faults", create_fault, ("POST",)),
    ("/__sim/faults", list_faults, ("GET",)),
    ("/__sim/faults", clear_faults, ("DELETE",)),
    ("/__sim/requests", list_requests, ("GET",)),
    ("/__sim/usage", get_usage, ("GET",)),
)


def create_app(state: StubState | None = None) -> Flask:
    """Build the stub app around `state` (a fresh one by default)."""
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the API's field order
    app.extensions[_EXTENSION] = state if state is not None else StubState()
    for rule, view, methods in _ROUTES:
        app.add_url_rule(rule, view_func=view, methods=list(methods))
    app.before_request(_begin_request)
    app.before_request(_authenticate)
    app.after_request(_finish_request)
    app.register_error_handler(ApiError, _error_response)
    app.register_error_handler(ControlError, _control_error)
    app.register_error_handler(HTTPException, _http_error)
    return app


def main(argv: list[str] | None = None) -> None:
    run_cli(create_app, argv, "Anthropic stub", 8090, "Anthropic Messages API stub")


if __name__ == "__main__":
    main()
