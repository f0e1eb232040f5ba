"""The PSA misbehaving: answers lost after the note was stored, 429s, 5xx and timeouts. Every
scenario ends with exactly one note per ticket and every job succeeded."""

from __future__ import annotations

import pytest

from tests.faults.conftest import (
    Deployment,
    assert_all_succeeded,
    assert_one_note_each,
    watch,
)

pytestmark = pytest.mark.faults

NOTES = "/notes"


def _posts(d: Deployment, ticket: str) -> list[dict[str, object]]:
    return [c for c in d.sim.calls(ticket) if c["method"] == "POST" and NOTES in str(c["path"])]


def _run(d: Deployment, faults: list[tuple[str, dict[str, object]]]) -> list[str]:
    """One resolve per fault (kind, params), each on a ticket of its own, run side by side; the
    tickets once every job finished, all succeeded."""
    started = []
    for kind, params in faults:
        ticket, session = d.ticket_session()
        d.sim.fault(kind, ticket, **params)
        started.append((ticket, d.client.start(session)["job_id"]))
    assert_all_succeeded([d.wait_job(job_id) for _, job_id in started])
    return [ticket for ticket, _ in started]


def test_a_note_stored_then_the_connection_dropped_is_found_not_posted_again(
    deployment: Deployment,
) -> None:
    tickets = _run(deployment, [("drop_after_store", {"method": "POST"})])
    assert_one_note_each(deployment.sim, tickets)


def test_5xx_on_reads_on_the_note_post_and_on_the_status_change_end_in_one_note_each(
    deployment: Deployment,
) -> None:
    tickets = _run(
        deployment,
        [
            ("server_error", {"method": "GET", "status": 503, "times": 2}),
            ("server_error", {"method": "POST", "status": 502, "times": 2}),
            ("server_error", {"method": "PATCH", "status": 500, "times": 2}),
        ],
    )
    assert_one_note_each(deployment.sim, tickets)


def test_timeouts_on_a_read_and_on_the_note_post_end_in_one_note_each(
    deployment: Deployment,
) -> None:
    """The PSA answers after the client's 2 s timeout; the late note POST is stored anyway."""
    tickets = _run(
        deployment,
        [
            ("slow", {"method": "GET", "delay": 3.0, "times": 1}),
            ("slow", {"method": "POST", "delay": 3.0, "times": 1}),
        ],
    )
    assert_one_note_each(deployment.sim, tickets)


def _retry_gap(d: Deployment, retry_after: int, patience: float) -> tuple[str, str, float]:
    """A 429 with `Retry-After: retry_after` on the note POST: (ticket, job id, seconds from
    seeing the 429 in the simulator's log to seeing the next note POST)."""
    ticket, session = d.ticket_session()
    d.sim.fault("rate_limit", ticket, method="POST", retry_after=retry_after)
    job_id = d.client.start(session)["job_id"]
    assert watch(lambda: len(_posts(d, ticket)) >= 1, timeout=30) is not None, "no note POST"
    gap = watch(lambda: len(_posts(d, ticket)) >= 2, timeout=patience, interval=0.05)
    assert gap is not None, (
        f"the note POST was not retried within {patience} s of a 429 with "
        f"Retry-After: {retry_after}"
    )
    return ticket, job_id, gap


def test_a_429_with_retry_after_1_is_retried_after_about_1_s_not_after_the_post_settle(
    deployment: Deployment,
) -> None:
    ticket, job_id, gap = _retry_gap(deployment, retry_after=1, patience=20)
    # The stack's post-settle is 5 s: a 429 is an answer, nothing was stored, nothing to settle.
    assert 0.8 <= gap < 3.0, f"a 429 with Retry-After: 1 was retried after {gap:.1f} s"
    assert_all_succeeded([deployment.wait_job(job_id)])
    assert_one_note_each(deployment.sim, [ticket])


def test_a_long_retry_after_is_never_undercut_and_parked_past_the_broker_countdown(
    deployment: Deployment,
) -> None:
    """A long Retry-After is held in the database, never in the broker, and honoured."""
    ticket, job_id, gap = _retry_gap(deployment, retry_after=8, patience=30)
    assert 7.8 <= gap < 14.0, f"a 429 with Retry-After: 8 was retried after {gap:.1f} s"
    assert_all_succeeded([deployment.wait_job(job_id)])
    assert_one_note_each(deployment.sim, [ticket])
