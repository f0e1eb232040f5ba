"""Fixtures shared by the suites that run the service on a real broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.brokers import private_broker, selected_brokers


@pytest.fixture(scope="session", params=selected_brokers())
def broker_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every integration and e2e test runs once per broker in WRITEBACK_TEST_BROKERS."""
    with private_broker(request.param) as url:
        yield url
