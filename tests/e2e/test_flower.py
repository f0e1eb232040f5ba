"""What ops see in Flower: our task names, the job id as the only argument, failures with the
job's error, and nothing without credentials."""

from __future__ import annotations

import ast

import requests

from tests.e2e.conftest import FLOWER_AUTH, Stack
from tests.support import Api, Simulator, wait_until

AUTH = tuple(FLOWER_AUTH.split(":", 1))


def _tasks(stack: Stack) -> dict[str, dict[str, object]]:
    response = requests.get(f"{stack.flower_url}/api/tasks", auth=AUTH, timeout=5)
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def test_flower_refuses_anonymous_requests(stack: Stack) -> None:
    assert requests.get(f"{stack.flower_url}/api/tasks", timeout=5).status_code == 401
    assert requests.get(f"{stack.flower_url}/", timeout=5).status_code == 401


def test_flower_shows_each_step_by_name_with_only_the_job_id(
    stack: Stack, client: Api, simulator_process: Simulator
) -> None:
    client.put("/account-settings", {"escalated_status_id": 43}, expect=200)
    connection_id = client.connect_simulator(simulator_process.url)
    good = client.session(connection_id, simulator_process.new_ticket())
    stuck_ticket = simulator_process.new_ticket()
    simulator_process.fault("status_not_applied", stuck_ticket, times=-1)
    bad = client.session(connection_id, stuck_ticket)
    ok_job = client.wait_job(client.start(good, "escalate")["job_id"])["id"]
    failed_job = client.wait_job(client.start(bad, "escalate")["job_id"])["id"]

    def seen() -> dict[str, dict[str, object]] | None:
        tasks = _tasks(stack)
        mine = {t["name"]: t for t in tasks.values() if ok_job in str(t.get("args"))}
        return tasks if "writeback.finalize" in mine else None

    tasks = wait_until(seen, timeout=20)
    ok_tasks = [t for t in tasks.values() if ok_job in str(t.get("args"))]
    assert {t["name"] for t in ok_tasks} == {
        "writeback.draft",
        "writeback.post_note",
        "writeback.transition_status",
        "writeback.verify",
        "writeback.finalize",
    }
    for task in ok_tasks:
        assert list(ast.literal_eval(str(task["args"]))) == [ok_job]
        assert task["kwargs"] == "{}"
        assert task["state"] == "SUCCESS"
    [verify] = [
        t
        for t in tasks.values()
        if failed_job in str(t.get("args")) and t["name"] == "writeback.verify"
    ]
    assert verify["state"] == "FAILURE"
    assert "status_verification_failed" in str(verify["exception"])
    assert "did not verify" in str(verify["exception"])
    assert "priv-key" not in str(tasks)
