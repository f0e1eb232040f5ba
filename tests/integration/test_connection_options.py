"""Per-connection provider options, stored (migration 0006) and used by the worker; and an
unknown ConnectWise company failing at once, end to end against the simulator."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import Api, Simulator

pytestmark = pytest.mark.integration

CREDENTIALS = {
    "public_key": "pub-key",
    "private_key": "priv-key",
    "client_id": "11111111-2222-3333-4444-555555555555",
}


def _connect(api: Api, simulator: Simulator, expect: int = 201, **extra: Any) -> Any:
    body = {
        "provider": "connectwise",
        "site_url": simulator.url,
        "company_id": "ACME",
        "credentials": CREDENTIALS,
        **extra,
    }
    return api.post("/psa-connections", body, expect=expect)


def test_options_are_stored_shown_and_used_by_the_worker(api: Api, simulator: Simulator) -> None:
    created = _connect(api, simulator, options={"accept_version": "2019.5"})
    assert created["options"] == {"accept_version": "2019.5"}
    assert api.get(f"/psa-connections/{created['id']}")["options"] == {"accept_version": "2019.5"}
    ticket = simulator.new_ticket()

    job = api.wait_job(api.start(api.session(created["id"], ticket))["job_id"])

    assert job["state"] == "succeeded"
    accepts = {c["headers"].get("Accept") for c in simulator.calls(ticket)}
    assert accepts == {"application/vnd.connectwise.com+json; version=2019.5"}


def test_a_connection_without_options_shows_none(api: Api, simulator: Simulator) -> None:
    assert _connect(api, simulator)["options"] is None


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"accept_version": "newest"}, "options.accept_version"),
        ({"publish": {"resolve": ["x"]}}, "options.publish"),  # an Autotask option
    ],
)
def test_invalid_options_are_refused_naming_the_field(
    api: Api, simulator: Simulator, options: dict[str, Any], field: str
) -> None:
    problem = _connect(api, simulator, expect=422, options=options)
    assert problem["errors"][0]["field"] == field


def test_an_unknown_company_fails_the_check_and_the_job_at_once(
    api: Api, simulator: Simulator
) -> None:
    connection = _connect(api, simulator, company_id="NOPE")
    check = api.post(f"/psa-connections/{connection['id']}/test", expect=200)
    assert (check["ok"], check["failed"]) == (False, "company_id")

    job = api.wait_job(api.start(api.session(connection["id"], simulator.new_ticket()))["job_id"])

    assert job["state"] == "failed" and job["error"]["code"] == "psa_not_found"
    assert job["attempts"] == 1
