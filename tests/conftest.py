"""Fixtures shared by the suites that run the service on a real broker, and how `make test`
spreads the suite over pytest-xdist workers.

`make test` runs `pytest -n 3 --dist loadgroup`. The tests that share a stack of processes carry
one `xdist_group` and run in one worker, one after another; groups, and the tests in none, run
side by side, longest first. A test joins a group through the fixtures it uses, never by hand:
- the integration and end-to-end tests of one broker (`broker_url`): `<suite>-<broker>`;
- the fault scenarios of one shared stack: see tests/faults/conftest.py.
The suites' stacks are fixtures of package scope: a worker stops them as it leaves the suite,
so a finished group holds no processes, CPU or database connections while the others run.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _pytest.nodeid import NodeId

from tests.brokers import private_broker, selected_brokers


@pytest.fixture(scope="session", params=selected_brokers())
def broker_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every integration and e2e test runs once per broker in WRITEBACK_TEST_BROKERS."""
    with private_broker(request.param) as url:
        yield url


def pytest_itemcollected(item: pytest.Item) -> None:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "broker_url" in callspec.params:
        item.add_marker(
            pytest.mark.xdist_group(f"{item.path.parent.name}-{callspec.params['broker_url']}")
        )


# Longest first, so that the short tests fill the workers' gaps at the end: the tests that start
# processes (e2e and faults), then those on a shared worker (integration), then the rest.
RUN_FIRST = ("faults", "e2e", "integration")


def _rank(item: pytest.Item) -> int:
    marks = {mark.name for mark in item.iter_markers()}
    return next((n for n, name in enumerate(RUN_FIRST) if name in marks), len(RUN_FIRST))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: the order pytest chose for its fixtures stays within a rank
    if getattr(config.option, "loadgroup", False):  # an xdist worker, under --dist loadgroup
        _send_groups(items)


def _send_groups(items: list[pytest.Item]) -> None:
    """pytest-xdist 3.8 tells its scheduler a test's group by appending "@group" to
    `item._nodeid`, which pytest 9.2 no longer reads (it keeps a structured `item._id`), so every
    test would be scheduled alone: pytest-dev/pytest-xdist#1386. Until a release of xdist does
    it, append it where pytest reads it, and stop the run if that stops working."""
    for item in items:
        names = {str(mark.args[0]) for mark in item.iter_markers("xdist_group")}
        suffix = "@" + "_".join(sorted(names))
        if names and not item.nodeid.endswith(suffix):
            item._id = NodeId.parse(item.nodeid + suffix)
            if not item.nodeid.endswith(suffix):
                raise pytest.UsageError(f"cannot mark the xdist group of {item.nodeid}")
