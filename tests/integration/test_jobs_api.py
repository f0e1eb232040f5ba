"""Listing, paging and retrying jobs through the API, on PostgreSQL with a real worker."""

from __future__ import annotations

import pytest

from tests.support import Api, Simulator

pytestmark = pytest.mark.integration


def test_jobs_are_listed_newest_first_filtered_and_paged(api: Api, other_api: Api) -> None:
    jobs = []
    for kind in ("resolve", "escalate", "resolve", "escalate", "escalate"):
        jobs.append(api.wait_job(api.start(api.session(), kind, "## x")["job_id"]))
    other_api.start(other_api.session())  # another account's job never shows

    everything = api.get("/jobs")["items"]
    assert [j["id"] for j in everything] == [j["id"] for j in reversed(jobs)]

    escalations = [j["id"] for j in jobs if j["kind"] == "escalate"]
    first = api.get("/jobs?kind=escalate&state=succeeded&limit=2")
    assert [j["id"] for j in first["items"]] == escalations[::-1][:2]
    second = api.get(f"/jobs?kind=escalate&state=succeeded&limit=2&cursor={first['next_cursor']}")
    assert [j["id"] for j in second["items"]] == escalations[::-1][2:]
    assert second["next_cursor"] is None

    assert api.get("/jobs?older_than=1h")["items"] == []
    assert len(api.get("/jobs?older_than=0s")["items"]) == 5


def test_bad_list_filters_are_422_naming_the_parameter(api: Api) -> None:
    problem = api.get("/jobs?state=stuck&older_than=soon&limit=0&cursor=nope", expect=422)
    assert {e["field"] for e in problem["errors"]} == {"state.0", "older_than", "limit", "cursor"}


def test_retry_resumes_a_failed_verification_without_posting_again(
    api: Api, simulator: Simulator
) -> None:
    api.put("/account-settings", {"escalated_status_id": 43}, expect=200)
    ticket = simulator.new_ticket()
    fault = simulator.fault("status_not_applied", ticket, times=-1)
    session_id = api.session(api.connect_simulator(simulator.url), ticket)
    failed = api.wait_job(api.start(session_id, "escalate")["job_id"])
    assert failed["state"] == "failed"
    simulator.clear_fault(fault)

    accepted = api.post(f"/jobs/{failed['id']}/retry", expect=202)

    done = api.wait_job(accepted["job_id"])
    assert done["state"] == "succeeded" and done["verified_status_id"] == 43
    assert done["external_id"] == failed["external_id"]
    assert len(simulator.ticket(ticket)["notes"]) == 1
    events = [e["event"] for e in api.get(f"/jobs/{failed['id']}/events")["events"]]
    assert events.count("note_posted") == 1 and "retried" in events
    again = api.post(f"/jobs/{failed['id']}/retry", expect=409)
    assert again["code"] == "job_not_failed"


def test_retry_of_another_accounts_job_is_not_found(api: Api, other_api: Api) -> None:
    job_id = api.start(api.session())["job_id"]
    other_api.post(f"/jobs/{job_id}/retry", expect=404)
    api.wait_job(job_id)


def test_a_sessions_ticket_stays_while_its_job_may_write_to_it(
    api: Api, simulator: Simulator
) -> None:
    """One ticket per job: a job writes to the ticket its session named when it was created,
    and the session's ticket cannot change under it (in flight, or once it may have posted)."""
    ticket, other = simulator.new_ticket(), simulator.new_ticket()
    connection = api.connect_simulator(simulator.url)
    session_id = api.session(connection, ticket)
    simulator.fault("slow", ticket, method="POST", delay=2.0)
    job_id = api.start(session_id)["job_id"]

    in_flight = api.call("PATCH", f"/ai-sessions/{session_id}", {"psa_ticket_id": other}, 409)
    assert (in_flight["code"], in_flight["job_id"]) == ("job_in_flight", job_id)
    chat = {"conversation_messages": [{"role": "user", "content": "and the scanner?"}]}
    assert api.call("PATCH", f"/ai-sessions/{session_id}", chat, 200)["psa_ticket_id"] == ticket

    assert api.wait_job(job_id)["state"] == "succeeded"
    posted = api.call("PATCH", f"/ai-sessions/{session_id}", {"psa_ticket_id": other}, 409)
    assert (posted["code"], posted["job_id"]) == ("ticket_locked", job_id)
    assert len(simulator.ticket(ticket)["notes"]) == 1 and simulator.ticket(other)["notes"] == []
