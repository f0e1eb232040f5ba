"""The seed's Phase 4 behaviour, kept: real PostgreSQL, Redis, Celery worker and the ConnectWise
simulator over HTTP. Each test has its own account and tickets."""

from __future__ import annotations

import pytest

from tests.support import Api, Simulator

pytestmark = pytest.mark.integration

RESOLVE_MD = "## Problem\nx\n\n## Resolution\nfixed"
ESCALATE_MD = "## Problem\nx\n\n## Suggested next steps\n- try X"


def _configure(api: Api, resolved: int | None = 42, escalated: int | None = 43) -> None:
    api.put(
        "/account-settings",
        {"resolved_status_id": resolved, "escalated_status_id": escalated},
        expect=200,
    )


def _linked_session(api: Api, simulator: Simulator, **ticket: int) -> tuple[int, str]:
    ticket_id = simulator.new_ticket(**ticket)
    return api.session(api.connect_simulator(simulator.url), ticket_id), ticket_id


def test_resolve_local_only_when_no_psa_ticket(api: Api) -> None:
    session_id = api.session()
    accepted = api.start(session_id, "resolve", RESOLVE_MD)
    assert accepted["status_url"] == f"/api/v1/jobs/{accepted['job_id']}"

    job = api.wait_job(accepted["job_id"])

    assert (job["state"], job["step"], job["outcome"], job["external_id"]) == (
        "succeeded",
        "done",
        "resolved_local",
        None,
    )
    session = api.get(f"/ai-sessions/{session_id}")
    assert session["status"] == "resolved"
    assert session["resolution_note_markdown"] == RESOLVE_MD
    assert session["resolved_at"] is not None


def test_escalate_local_only_when_no_psa_ticket(api: Api) -> None:
    session_id = api.session()
    job = api.wait_job(api.start(session_id, "escalate", ESCALATE_MD)["job_id"])
    assert job["outcome"] == "escalated_local"
    session = api.get(f"/ai-sessions/{session_id}")
    assert session["status"] == "escalated" and session["escalation_package_markdown"]
    assert session["escalated_at"] is not None


def test_resolve_posts_to_psa_and_verifies_status(api: Api, simulator: Simulator) -> None:
    _configure(api)
    session_id, ticket_id = _linked_session(api, simulator)

    job = api.wait_job(api.start(session_id, "resolve", RESOLVE_MD)["job_id"])

    ticket = simulator.ticket(ticket_id)
    [note] = ticket["notes"]
    assert job["state"] == "succeeded" and job["outcome"] == "resolved"
    assert job["external_id"] == str(note["id"])
    assert (job["verified_status_id"], job["verified_status_name"]) == (42, "Resolved")
    assert note["resolutionFlag"] is True and note["text"].startswith(RESOLVE_MD)
    assert ticket["status"]["id"] == 42
    methods = [c["method"] for c in simulator.calls(ticket_id)]
    # read the board's target, post, read, change, read back
    assert methods == ["GET", "POST", "GET", "PATCH", "GET"]
    assert api.get(f"/ai-sessions/{session_id}")["status"] == "resolved"


def test_escalate_posts_internal_note_to_psa(api: Api, simulator: Simulator) -> None:
    _configure(api)
    session_id, ticket_id = _linked_session(api, simulator)

    job = api.wait_job(api.start(session_id, "escalate", ESCALATE_MD)["job_id"])

    [note] = simulator.ticket(ticket_id)["notes"]
    assert job["outcome"] == "escalated" and job["external_id"] == str(note["id"])
    assert note["internalAnalysisFlag"] is True
    assert note["resolutionFlag"] is False and note["detailDescriptionFlag"] is False
    assert job["verified_status_id"] == 43


def test_status_that_does_not_verify_fails_the_job_after_bounded_retries(
    api: Api, simulator: Simulator
) -> None:
    _configure(api)
    session_id, ticket_id = _linked_session(api, simulator)
    simulator.fault("status_not_applied", ticket_id, times=-1)

    job = api.wait_job(api.start(session_id, "resolve", RESOLVE_MD)["job_id"])

    assert job["state"] == "failed" and job["step"] == "verify"
    assert job["error"]["code"] == "status_verification_failed"
    assert "did not verify" in job["error"]["message"]
    assert job["attempts"] == 3  # WRITEBACK_VERIFY_ATTEMPTS
    ticket = simulator.ticket(ticket_id)
    assert len(ticket["notes"]) == 1 and ticket["status"]["id"] == 1
    patches = [c for c in simulator.calls(ticket_id) if c["method"] == "PATCH"]
    assert len(patches) == 3  # the first change and one re-apply per retry
    [failed] = [e for e in api.get(f"/jobs/{job['id']}/events")["events"] if e["step"] == "verify"]
    assert failed["event"] == "failed" and "after attempt 3 of 3" in failed["detail"]["message"]
    assert api.get(f"/ai-sessions/{session_id}")["status"] == "active"


def test_status_that_sticks_on_a_retry_succeeds(api: Api, simulator: Simulator) -> None:
    _configure(api)
    session_id, ticket_id = _linked_session(api, simulator)
    simulator.fault("status_not_applied", ticket_id, times=1)

    job = api.wait_job(api.start(session_id, "resolve", RESOLVE_MD)["job_id"])

    assert job["state"] == "succeeded" and job["verified_status_id"] == 42
    events = api.get(f"/jobs/{job['id']}/events")["events"]
    [verified] = [e for e in events if e["event"] == "status_verified"]
    assert len(verified["detail"]["failed_attempts"]) == 1


def test_unconfigured_status_posts_note_and_skips_transition(
    api: Api, simulator: Simulator
) -> None:
    session_id, ticket_id = _linked_session(api, simulator)

    job = api.wait_job(api.start(session_id, "resolve", RESOLVE_MD)["job_id"])

    assert job["state"] == "succeeded" and job["outcome"] == "resolved"
    assert job["verified_status_id"] is None and job["status_transition_skipped_reason"]
    assert [c["method"] for c in simulator.calls(ticket_id)] == ["POST"]  # no PATCH, no re-read


def test_resolve_rejects_already_resolved_session(api: Api) -> None:
    session_id = api.session()
    api.wait_job(api.start(session_id)["job_id"])
    problem = api.start(session_id, expect=409)
    assert problem["code"] == "already_resolved" and problem["status"] == 409


def test_escalate_rejects_already_escalated_session(api: Api) -> None:
    session_id = api.session()
    api.wait_job(api.start(session_id, "escalate", ESCALATE_MD)["job_id"])
    assert api.start(session_id, "escalate", ESCALATE_MD, expect=409)["code"] == "already_escalated"


def test_a_post_while_a_job_is_in_flight_conflicts_with_that_jobs_id(
    api: Api, simulator: Simulator
) -> None:
    session_id, ticket_id = _linked_session(api, simulator)
    simulator.fault("slow", ticket_id, delay=1.0)  # keep the first job in flight
    first = api.start(session_id)["job_id"]

    problem = api.start(session_id, "escalate", ESCALATE_MD, expect=409)

    assert problem["code"] == "job_in_flight" and problem["job_id"] == first
    api.wait_job(first)


def test_other_accounts_session_and_job_are_not_found(api: Api, other_api: Api) -> None:
    session_id = api.session()
    job_id = api.start(session_id)["job_id"]
    missing_session = other_api.get(f"/ai-sessions/{session_id}", expect=404)
    missing_job = other_api.get(f"/jobs/{job_id}", expect=404)
    unknown_job = other_api.get("/jobs/00000000-0000-0000-0000-000000000000", expect=404)
    assert missing_job.keys() == unknown_job.keys() and missing_job["code"] == "not_found"
    assert missing_session["code"] == "not_found"
    other_api.start(session_id, expect=404)
    api.wait_job(job_id)


@pytest.mark.parametrize(
    ("fault", "params"),
    [
        ("rate_limit", {"retry_after": 1}),
        ("server_error", {"status": 503}),
        ("slow", {"delay": 3.0}),  # past WRITEBACK_PSA_TIMEOUT=2
        ("drop_after_store", {}),
    ],
)
def test_transient_psa_failure_on_post_is_retried_and_posts_exactly_one_note(
    api: Api, simulator: Simulator, fault: str, params: dict[str, float]
) -> None:
    _configure(api)
    session_id, ticket_id = _linked_session(api, simulator)
    simulator.fault(fault, ticket_id, method="POST", **params)

    job = api.wait_job(api.start(session_id)["job_id"])

    assert job["state"] == "succeeded" and job["verified_status_id"] == 42
    assert len(simulator.ticket(ticket_id)["notes"]) == 1
    events = api.get(f"/jobs/{job['id']}/events")["events"]
    [retry] = [e for e in events if e["event"] == "retry_scheduled"]
    assert retry["step"] == "post_note" and retry["detail"]["code"] == "psa_unavailable"
    if fault == "rate_limit":
        assert retry["detail"]["delay"] >= 1.0  # Retry-After honoured


def test_post_without_markdown_is_drafted_in_the_pipeline(api: Api) -> None:
    session_id = api.session()
    job = api.wait_job(api.start(session_id, "escalate", markdown=None)["job_id"])
    assert job["state"] == "succeeded"
    package = api.get(f"/ai-sessions/{session_id}")["escalation_package_markdown"]
    headings = [line for line in package.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Problem",
        "## What we've confirmed",
        "## What we've tried",
        "## Current hypothesis",
        "## Suggested next steps",
    ]
    events = api.get(f"/jobs/{job['id']}/events")["events"]
    assert [e["event"] for e in events][:2] == ["created", "drafted"]  # one row per step
    assert events[1]["detail"]["drafter"] == "anthropic:claude-sonnet-4-6"
