"""Every domain error has an HTTP answer: each DomainError subclass the service defines, raised
in a route, leaves the API's one error mapping as problem+json, never as a 500. A new error class
fails here until it is given an answer in api/errors.py."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator

import pytest
from flask import Flask

import writeback.adapters
import writeback.api
import writeback.domain
from writeback.api.errors import PROBLEM_JSON, register
from writeback.domain.errors import (
    BudgetWait,
    ConcurrencyWait,
    DomainError,
    SessionGone,
    StatusTargetError,
)

# Wherever a domain error may be defined: every module a route can reach.
PACKAGES = (writeback.domain, writeback.adapters, writeback.api)
# A value for each kind of required constructor argument.
SAMPLES = {str: "something went wrong", float: 2.5, int: 2}


def _load_every_module() -> None:
    for package in PACKAGES:
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            importlib.import_module(module.name)


def _subclasses(cls: type[DomainError]) -> Iterator[type[DomainError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _instance(cls: type[DomainError]) -> DomainError:
    """`cls` made with a sample value for each required argument, by its type."""
    signature = inspect.signature(cls, eval_str=True)
    arguments = {
        name: SAMPLES[parameter.annotation]
        for name, parameter in signature.parameters.items()
        if parameter.default is inspect.Parameter.empty
    }
    return cls(**arguments)


_load_every_module()
ERRORS = sorted(set(_subclasses(DomainError)), key=lambda cls: cls.__name__)


@pytest.fixture(scope="module")
def app() -> Flask:
    app = Flask("error-mapping")
    register(app)

    @app.get("/raise/<name>")
    def raise_it(name: str) -> None:
        raise _instance(next(cls for cls in ERRORS if cls.__name__ == name))

    return app


def test_the_walk_finds_the_errors_the_issue_names() -> None:
    assert {BudgetWait, ConcurrencyWait, SessionGone, StatusTargetError} <= set(ERRORS)


@pytest.mark.parametrize("error", ERRORS, ids=lambda cls: cls.__name__)
def test_every_domain_error_has_an_answer_that_is_not_a_500(
    app: Flask, error: type[DomainError]
) -> None:
    response = app.test_client().get(f"/raise/{error.__name__}")
    body = response.get_json()
    assert response.status_code != 500, (error.__name__, body)
    assert response.content_type == PROBLEM_JSON
    assert body["status"] == response.status_code and body["code"] != "internal_error"


@pytest.mark.parametrize("error", [BudgetWait, ConcurrencyWait])
def test_a_busy_psa_budget_answers_429_with_retry_after(
    app: Flask, error: type[DomainError]
) -> None:
    response = app.test_client().get(f"/raise/{error.__name__}")
    assert response.status_code == 429
    assert response.get_json()["code"] == "psa_budget_busy"
    assert response.headers["Retry-After"] == "3"  # 2.5 s, rounded up: never early
