"""Per-request helpers shared by the blueprints: the container, the caller, the parsed body."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from cachetools import TTLCache
from flask import current_app, g, request
from pydantic import BaseModel
from werkzeug.exceptions import BadRequest, HTTPException, UnsupportedMediaType

from writeback.api.schemas import refuse_unstorable
from writeback.bootstrap import Container
from writeback.domain.accounts import Principal, hash_token
from writeback.domain.errors import Unauthorized

M = TypeVar("M", bound=BaseModel)


def container() -> Container:
    return current_app.extensions["writeback"]  # type: ignore[no-any-return]


def principal() -> Principal:
    return g.principal  # type: ignore[no-any-return]


class TokenCache:
    """Recently seen tokens, by hash, for `ttl` seconds: a polling frontend costs no token query
    per request. Bounded, so a flood of random tokens cannot grow it."""

    def __init__(self, ttl: float = 30.0, size: int = 10_000) -> None:
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe on their own
        self._entries: TTLCache[str, Principal] = TTLCache(size, ttl)

    def get(self, token: str, load: Callable[[], Principal]) -> Principal:
        key = hash_token(token)
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None:
            return hit
        principal = load()  # raises Unauthorized: failures are never cached
        with self._lock:
            self._entries[key] = principal
        return principal


def authenticate_request() -> None:
    """before_request of every /api/v1 blueprint. CORS preflights carry no token."""
    if request.method == "OPTIONS":
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send Authorization: Bearer <token>.")
    cache: TokenCache = current_app.extensions["writeback.tokens"]
    g.principal = cache.get(token.strip(), lambda: container().accounts.authenticate(token.strip()))


def body(model: type[M]) -> M:
    """The JSON body validated against `model`: 415 if not JSON, 400 if malformed (a broken
    chunked stream, nesting too deep), 422 if invalid or unstorable (naming the fields)."""
    if not request.is_json:
        raise UnsupportedMediaType("Send the request body as application/json.")
    try:
        request.get_data(cache=True)
    except HTTPException:  # 413 over WRITEBACK_MAX_BODY_BYTES
        raise
    except Exception:  # the WSGI server's own parse errors (gunicorn's InvalidChunkSize, ...)
        raise BadRequest("The request body could not be read.") from None
    try:
        data = request.get_json(silent=True)
        unstorable = refuse_unstorable(data)
    except RecursionError:
        raise BadRequest("The request body is nested too deeply.") from None
    if data is None:
        raise BadRequest("The request body is not valid JSON.")
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    if unstorable:
        raise UnstorableInput(unstorable)
    return model.model_validate(data)


class UnstorableInput(Exception):
    """422 naming each field the database could not store as sent."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(errors)
        self.errors = errors
