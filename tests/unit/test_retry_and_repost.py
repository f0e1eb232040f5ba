"""Retrying failed jobs one by one or in bulk: never a second note, never two in-flight jobs."""

from __future__ import annotations

import pytest

from tests.unit.conftest import World
from writeback.domain.errors import Conflict, JobInFlight
from writeback.domain.model import JobFilter, JobKind, JobState, Step
from writeback.domain.repost import RepostReport, Result, repost_one, stream_jobs


def _retry(world: World, job_id: str) -> None:
    world.jobs.retry(job_id, world.principal.account_id)


def _failed_verification(world: World, ticket: str) -> str:
    world.configure_statuses()
    world.provider.ignore_status_changes = 100
    job_id = world.request(world.session(ticket), JobKind.ESCALATE)
    world.run(job_id)
    assert world.store.jobs[job_id].state == JobState.FAILED
    return job_id


def test_a_failed_verification_retries_from_the_transition_without_a_second_note(
    world: World,
) -> None:
    job_id = _failed_verification(world, "3001")
    world.provider.ignore_status_changes = 0  # the workflow rule was fixed

    _retry(world, job_id)

    assert world.queue.enqueued[-1] == (job_id, Step.TRANSITION_STATUS)
    world.run(job_id)
    job = world.store.jobs[job_id]
    assert job.state == JobState.SUCCEEDED and job.verified_status_id == 43
    assert len(world.provider.notes["3001"]) == 1
    assert world.provider.count("post_note") == 1


def test_a_job_that_failed_before_posting_resumes_at_post_note(world: World) -> None:
    from writeback.domain.errors import PsaTransientError

    world.provider.fail_next["post_note"] = [PsaTransientError("503")] * world.policy.max_attempts
    job_id = world.request(world.session("3002"))
    world.run(job_id)
    assert world.store.jobs[job_id].step == Step.POST_NOTE

    _retry(world, job_id)
    world.run(job_id)

    assert world.store.jobs[job_id].state == JobState.SUCCEEDED
    assert len(world.provider.notes["3002"]) == 1


def test_only_failed_jobs_can_be_retried(world: World) -> None:
    job_id = world.request(world.session(ticket_id=None))
    with pytest.raises(Conflict):
        _retry(world, job_id)


def test_retry_refuses_when_another_job_of_the_session_is_in_flight(world: World) -> None:
    job_id = _failed_verification(world, "3003")
    other = world.request(world.store.jobs[job_id].session_id, JobKind.RESOLVE)
    with pytest.raises(JobInFlight) as caught:
        _retry(world, job_id)
    assert caught.value.job_id == other
    assert world.job(job_id).state is JobState.FAILED  # nothing half-written


def test_a_new_post_after_a_job_failed_having_posted_names_that_job_to_retry(
    world: World,
) -> None:
    job_id = _failed_verification(world, "3004")
    session_id = world.store.jobs[job_id].session_id
    with pytest.raises(Conflict) as caught:
        world.request(session_id, JobKind.ESCALATE)
    assert (caught.value.code, caught.value.job_id) == ("retry_failed_job", job_id)
    assert len(world.store.jobs) == 1 and len(world.provider.notes["3004"]) == 1


def test_a_new_post_after_a_job_failed_before_posting_starts_a_new_job(world: World) -> None:
    world.drafter.markdown = "see https://evil.example"
    failed = world.request(world.session("3005"), markdown=None)
    world.run(failed)
    assert world.job(failed).error_code == "draft_invalid"
    world.drafter.markdown = None
    again = world.request(world.job(failed).session_id, markdown=None)
    world.run(again)
    assert world.job(again).state is JobState.SUCCEEDED


def test_streaming_pages_through_every_match_newest_first(world: World) -> None:
    session_ids = [world.session(ticket_id=None) for _ in range(7)]
    job_ids = []
    for session_id in session_ids:
        job_ids.append(world.request(session_id))
        world.clock.advance(1)
    streamed = [
        j.id for j in stream_jobs(JobFilter(kinds=("resolve",)), uow=world.uow, page_size=3)
    ]
    assert streamed == list(reversed(job_ids))


def test_bulk_repost_twice_reposts_each_stuck_job_once(world: World) -> None:
    job_ids = [_failed_verification(world, f"40{n}") for n in range(3)]
    world.provider.ignore_status_changes = 0
    where = JobFilter(states=("failed",), kinds=("escalate",))

    def run_once() -> RepostReport:
        report = RepostReport()
        for job in stream_jobs(where, uow=world.uow, page_size=2):
            report.add(repost_one(job, jobs=world.jobs))
        return report

    first, second = run_once(), run_once()
    assert first.counts[Result.REPOSTED] == 3
    assert second.counts[Result.REPOSTED] == 0  # they are no longer failed
    for job_id in job_ids:
        world.run(job_id)
        assert world.store.jobs[job_id].state == JobState.SUCCEEDED
    assert all(len(world.provider.notes[f"40{n}"]) == 1 for n in range(3))


def test_bulk_repost_leaves_in_flight_jobs_to_the_scheduler(world: World) -> None:
    live = world.request(world.session(ticket_id=None))
    results = [repost_one(job, jobs=world.jobs) for job in stream_jobs(JobFilter(), uow=world.uow)]
    assert results == [Result.IN_FLIGHT]
    assert world.queue.enqueued == [(live, Step.DRAFT)]  # nothing sent twice


def test_a_batch_beyond_the_tenant_slots_waits_in_the_database_and_all_complete(
    world: World,
) -> None:
    sessions = [world.session(f"50{n:02}") for n in range(world.policy.tenant_slots + 6)]
    job_ids = [world.request(s) for s in sessions]
    assert len(world.queue.sent) == world.policy.tenant_slots  # the rest are held
    for job_id in job_ids:
        world.run(job_id)
    assert all(world.job(j).state is JobState.SUCCEEDED for j in job_ids)
    assert all(len(world.provider.notes[f"50{n:02}"]) == 1 for n in range(len(sessions)))
