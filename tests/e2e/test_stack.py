"""A resolve and an escalate through the real processes, over HTTP, bootstrapped by the CLI."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import http_api, run_cli
from tests.support import Api, Process, Simulator

pytestmark = pytest.mark.e2e


def test_accounts_create_prints_one_json_object_and_tokens_create_adds_a_user(
    stack_env: dict[str, str], api_url: str, account: dict[str, Any]
) -> None:
    assert set(account) == {"account_id", "user_id", "token"}
    second = run_cli(stack_env, "tokens", "create", "--account", str(account["account_id"]))
    assert set(second) == {"user_id", "token"} and second["user_id"] != account["user_id"]
    # both tokens see the same account's objects
    first_api, second_api = http_api(api_url, account["token"]), http_api(api_url, second["token"])
    session_id = first_api.session()
    assert second_api.get(f"/ai-sessions/{session_id}")["id"] == session_id


def test_resolve_and_escalate_are_posted_verified_and_visible_to_a_polling_client(
    client: Api, simulator_process: Simulator, stack_worker: Process
) -> None:
    client.put(
        "/account-settings", {"resolved_status_id": 42, "escalated_status_id": 43}, expect=200
    )
    connection_id = client.connect_simulator(simulator_process.url)
    for kind, status_id, flag in (
        ("resolve", 42, "resolutionFlag"),
        ("escalate", 43, "internalAnalysisFlag"),
    ):
        ticket_id = simulator_process.new_ticket()
        session_id = client.session(connection_id, ticket_id)

        job = client.wait_job(client.start(session_id, kind)["job_id"])

        ticket = simulator_process.ticket(ticket_id)
        [note] = ticket["notes"]
        assert job["state"] == "succeeded" and job["external_id"] == str(note["id"])
        assert note[flag] is True and ticket["status"]["id"] == status_id
        assert job["verified_status_id"] == status_id
    # Nothing secret in the worker's log: no credential, no note body.
    assert "priv-key" not in stack_worker.log and "## Fix" not in stack_worker.log
    # Every line the pipeline logs about a job carries the job's fields.
    lines = [json.loads(line) for line in stack_worker.log.splitlines() if line.startswith("{")]
    ours = [line for line in lines if line.get("job_id") == job["id"]]
    assert ours and all({"step", "session_id", "account_id"} <= line.keys() for line in ours)
