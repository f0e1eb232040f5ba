"""Per-request helpers shared by the blueprints: the container, the caller, the parsed body."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from flask import current_app, g, request
from pydantic import BaseModel
from werkzeug.exceptions import BadRequest, HTTPException, UnsupportedMediaType

from writeback.api.schemas import refuse_unstorable
from writeback.bootstrap import Container
from writeback.domain.errors import Unauthorized
from writeback.domain.services import Principal, authenticate, hash_token

M = TypeVar("M", bound=BaseModel)


def container() -> Container:
    return current_app.extensions["writeback"]  # type: ignore[no-any-return]


def principal() -> Principal:
    return g.principal  # type: ignore[no-any-return]


class TokenCache:
    """Recently seen tokens, by hash, for `ttl` seconds: a polling frontend costs no token query
    per request. Bounded, so a flood of random tokens cannot grow it."""

    def __init__(self, ttl: float = 30.0, size: int = 10_000) -> None:
        self._ttl, self._size = ttl, size
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    def get(self, token: str, load: Callable[[], Principal]) -> Principal:
        key, now = hash_token(token), time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and now - hit[0] < self._ttl:
                return hit[1]
        principal = load()  # raises Unauthorized: failures are never cached
        with self._lock:
            self._entries[key] = (now, principal)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return principal


def authenticate_request() -> None:
    """before_request of every /api/v1 blueprint. CORS preflights carry no token."""
    if request.method == "OPTIONS":
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send Authorization: Bearer <token>.")
    cache: TokenCache = current_app.extensions["writeback.tokens"]
    g.principal = cache.get(
        token.strip(), lambda: authenticate(token.strip(), uow=container().read_uow)
    )


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
