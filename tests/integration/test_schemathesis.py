"""schemathesis against the document the API serves: every operation with generated valid and
invalid inputs, and stateful sequences along the document's links (create a session → post →
get the job → its events). All checks; no failure, no server error. Real PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from tests.integration.conftest import new_api
from writeback import bootstrap
from writeback.api import create_app

pytestmark = pytest.mark.integration

# A schema-valid request may still be refused by the domain, rightly: an unknown provider or a
# site URL the SSRF guard refuses (422), a session already resolved (409), a PSA that says no
# (502). Every other check runs, server errors included.
DOMAIN_REFUSALS = [positive_data_acceptance]


@pytest.fixture(scope="module")
def served(container: bootstrap.Container) -> tuple[Flask, dict[str, str]]:
    app = create_app(container)
    return app, new_api(container, app.test_client()).token_header


@pytest.fixture(scope="module")
def api_schema(served: tuple[Flask, dict[str, str]]) -> Any:
    app, auth = served
    loaded = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)

    @loaded.auth()
    class Bearer:
        """The account's token, through schemathesis's auth: its ignored-auth probes replace
        it with invalid ones and expect 401."""

        def get(self, case: Any, context: Any) -> str:
            return auth["Authorization"].split()[1]

        def set(self, case: Any, data: str, context: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    return loaded


def test_every_operation_conforms(api_schema: Any) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 21
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def conforms(case: Any) -> None:
            case.call_and_validate(excluded_checks=DOMAIN_REFUSALS)

        conforms()


def test_stateful_links_conform(api_schema: Any) -> None:
    class Machine(api_schema.as_state_machine()):  # type: ignore[misc]
        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, excluded_checks=DOMAIN_REFUSALS)

    Machine.run(
        settings=settings(
            max_examples=25,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
