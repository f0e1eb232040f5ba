"""What operators live through: a PSA outage, a worker killed mid-job, bulk re-posting."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Stack, http_api, run_cli, run_cli_text
from tests.support import Api, Simulator, wait_until

pytestmark = pytest.mark.e2e


def _prepare(client: Api, simulator: Simulator) -> int:
    client.put(
        "/account-settings", {"resolved_status_id": 42, "escalated_status_id": 43}, expect=200
    )
    return client.connect_simulator(simulator.url)


def test_a_psa_outage_leaves_escalations_stuck_and_repost_stuck_brings_each_back_once(
    client: Api,
    account: dict[str, Any],
    simulator_process: Simulator,
    stack_env: dict[str, str],
) -> None:
    sim = simulator_process
    connection_id = _prepare(client, sim)
    tickets = [sim.new_ticket() for _ in range(6)]
    # The PSA answers 503 to everything about these tickets; two more accept the note but
    # never apply the status (a workflow rule), so they fail after the note is posted.
    outage = [sim.fault("server_error", t, status=503, times=-1) for t in tickets[:4]]
    workflow = [sim.fault("status_not_applied", t, times=-1) for t in tickets[4:]]
    jobs = [client.start(client.session(connection_id, t), "escalate")["job_id"] for t in tickets]

    stuck = [client.wait_job(job_id) for job_id in jobs]
    assert [j["state"] for j in stuck] == ["failed"] * 6
    assert {j["error"]["code"] for j in stuck} == {"psa_unavailable", "status_verification_failed"}
    listed = client.get("/jobs?state=failed&kind=escalate&limit=100")["items"]
    assert {j["id"] for j in listed} == set(jobs)

    for fault_id in outage + workflow:  # the outage ends
        sim.clear_fault(fault_id)
    dry = run_cli_text(
        stack_env, "repost-stuck", "--account", str(account["account_id"]), "--dry-run"
    )
    assert all(job_id in dry for job_id in jobs)
    summary = run_cli(stack_env, "repost-stuck", "--account", str(account["account_id"]))
    assert summary["reposted"] == 6 and summary["error"] == 0

    finished = [client.wait_job(job_id) for job_id in jobs]
    assert [j["state"] for j in finished] == ["succeeded"] * 6
    assert [len(sim.ticket(t)["notes"]) for t in tickets] == [1] * 6
    again = run_cli(stack_env, "repost-stuck", "--account", str(account["account_id"]))
    assert again["reposted"] == 0


def test_a_worker_killed_mid_post_is_recovered_by_the_sweep_with_one_note(
    stack_env: dict[str, str],
    simulator_process: Simulator,
    logs: Path,
) -> None:
    queue = f"wb-kill-{uuid.uuid4().hex[:6]}"
    stack = Stack({**stack_env, "WRITEBACK_QUEUE": queue}, logs, "kill")
    try:
        account = run_cli(stack.env, "accounts", "create", "kill-test")
        client = http_api(stack.url, account["token"])
        sim = simulator_process
        ticket = sim.new_ticket()
        session_id = client.session(_prepare(client, sim), ticket)
        # The PSA takes 3 s to answer the note POST; it stores the note all the same.
        sim.fault("slow", ticket, method="POST", delay=3.0)
        job_id = client.start(session_id, "resolve")["job_id"]
        wait_until(lambda: client.get(f"/jobs/{job_id}")["step"] == "post_note")
        time.sleep(0.5)  # intent recorded, the POST is on the wire

        stack.replace_worker()  # SIGKILL mid-post, then a fresh worker

        job = client.wait_job(job_id, timeout=60)
        assert job["state"] == "succeeded", job
        assert len(sim.ticket(ticket)["notes"]) == 1
        events = client.get(f"/jobs/{job_id}/events")["events"]
        # On either broker the step is recovered by its lease, not by a redelivery.
        assert "requeued" in [e["event"] for e in events]
        [posted] = [e for e in events if e["event"] == "note_posted"]
        assert posted["detail"]["found"] is True  # found on the ticket, not posted again
    finally:
        stack.stop()
