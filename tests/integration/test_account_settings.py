"""The account's fallback target statuses, named for every PSA: `resolved_status_id` and
`escalated_status_id`. Their ConnectWise-only names (`cw_...`) are still accepted and answered
for one release, marked deprecated in the OpenAPI document."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.support import Api

pytestmark = pytest.mark.integration

BOTH_NAMES = {
    "resolved_status_id": 42,
    "escalated_status_id": 43,
    "cw_resolved_status_id": 42,
    "cw_escalated_status_id": 43,
}


def test_the_settings_are_stored_and_answered_under_both_names(api: Api) -> None:
    assert api.put("/account-settings", {"resolved_status_id": 42}, expect=200) == {
        **BOTH_NAMES,
        "escalated_status_id": None,
        "cw_escalated_status_id": None,
    }
    api.put("/account-settings", {"escalated_status_id": 43}, expect=200)  # the other one stays
    assert api.get("/account-settings") == BOTH_NAMES


def test_the_old_names_are_still_accepted(api: Api) -> None:
    old = {"cw_resolved_status_id": 42, "cw_escalated_status_id": 43}
    assert api.put("/account-settings", old, expect=200) == BOTH_NAMES
    cleared = api.put("/account-settings", {"cw_escalated_status_id": None}, expect=200)
    assert (cleared["escalated_status_id"], cleared["resolved_status_id"]) == (None, 42)


def test_one_setting_under_both_names_must_have_one_value(api: Api) -> None:
    agreed = {"resolved_status_id": 42, "cw_resolved_status_id": 42}
    assert api.put("/account-settings", agreed, expect=200)["resolved_status_id"] == 42
    problem = api.put(
        "/account-settings", {"resolved_status_id": 42, "cw_resolved_status_id": 7}, expect=422
    )
    assert [e["field"] for e in problem["errors"]] == ["cw_resolved_status_id"]
    assert api.get("/account-settings")["resolved_status_id"] == 42


def test_the_old_names_are_deprecated_in_the_openapi_document(flask_client: FlaskClient) -> None:
    schemas: dict[str, Any] = flask_client.get("/api/v1/openapi.json").get_json()["components"][
        "schemas"
    ]
    for schema in (schemas["SettingsIn"], schemas["Settings"]):  # the PUT body, the answer
        properties = schema["properties"]
        assert properties["cw_resolved_status_id"]["deprecated"] is True
        assert properties["cw_escalated_status_id"]["deprecated"] is True
        assert "deprecated" not in properties["resolved_status_id"]
        assert "deprecated" not in properties["escalated_status_id"]
