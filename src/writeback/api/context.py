"""Per-request helpers shared by the blueprints: the container, the caller, the parsed body."""

from __future__ import annotations

from typing import TypeVar

from flask import current_app, g, request
from pydantic import BaseModel
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from writeback.bootstrap import Container
from writeback.domain.errors import Unauthorized
from writeback.domain.services import Principal, authenticate

M = TypeVar("M", bound=BaseModel)


def container() -> Container:
    return current_app.extensions["writeback"]  # type: ignore[no-any-return]


def principal() -> Principal:
    return g.principal  # type: ignore[no-any-return]


def authenticate_request() -> None:
    """before_request of every /api/v1 blueprint."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send Authorization: Bearer <token>.")
    g.principal = authenticate(token.strip(), uow=container().uow)


def body(model: type[M]) -> M:
    """The JSON body validated against `model`: 415 if not JSON, 400 if malformed, 422 if
    invalid (naming the fields)."""
    if not request.is_json:
        raise UnsupportedMediaType("Send the request body as application/json.")
    data = request.get_json(silent=True)
    if data is None:
        raise BadRequest("The request body is not valid JSON.")
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    return model.model_validate(data)
