"""The pipeline's behaviour on in-memory fakes: outcomes, retries, and safety when run twice."""

from __future__ import annotations

import copy

import pytest

from tests.unit.conftest import World
from writeback.domain.errors import PsaAuthError, PsaTransientError
from writeback.domain.model import PIPELINE, JobKind, JobState, NoteType, SessionStatus, Step
from writeback.domain.pipeline import Action


def test_local_resolve_stores_markdown_and_flips_status_without_psa_calls(world: World) -> None:
    session_id = world.session(ticket_id=None)
    job_id = world.request(session_id, markdown="## Resolution\nfixed")

    assert world.run(job_id).action is Action.FINISHED

    job, session = world.store.jobs[job_id], world.store.sessions[session_id]
    assert (job.state, job.step, job.outcome, job.external_id) == (
        "succeeded",
        "done",
        "resolved_local",
        None,
    )
    assert session.status == SessionStatus.RESOLVED
    assert session.resolution_note_markdown == "## Resolution\nfixed"
    assert session.resolved_at == world.clock()
    assert world.provider.calls == []


def test_local_escalate_ends_escalated_local(world: World) -> None:
    session_id = world.session(ticket_id=None)
    job_id = world.request(session_id, JobKind.ESCALATE, markdown="## Problem\nx")
    world.run(job_id)
    assert world.store.jobs[job_id].outcome == "escalated_local"
    assert world.store.sessions[session_id].escalation_package_markdown == "## Problem\nx"


def test_resolve_posts_resolution_note_changes_status_and_verifies(world: World) -> None:
    world.configure_statuses()
    session_id = world.session("1001")
    job_id = world.request(session_id)

    world.run(job_id)

    job = world.store.jobs[job_id]
    [note] = world.provider.notes["1001"]
    assert note.note_type is NoteType.RESOLUTION
    assert note.text.startswith("## Resolution\nRestarted the spooler.")
    assert job.note_marker in note.text
    assert (job.state, job.outcome, job.external_id) == ("succeeded", "resolved", note.id)
    assert (job.verified_status_id, job.verified_status_name) == (42, "Resolved")
    assert world.provider.tickets["1001"].status_id == 42
    assert world.store.sessions[session_id].status == SessionStatus.RESOLVED


def test_escalate_posts_internal_analysis_note(world: World) -> None:
    world.configure_statuses()
    job_id = world.request(world.session("1002"), JobKind.ESCALATE, markdown="## Problem\nx")
    world.run(job_id)
    [note] = world.provider.notes["1002"]
    assert note.note_type is NoteType.INTERNAL_ANALYSIS
    assert world.store.jobs[job_id].outcome == "escalated"
    assert world.provider.tickets["1002"].status_id == 43


def test_unconfigured_status_posts_note_and_skips_transition(world: World) -> None:
    job_id = world.request(world.session("1003"))
    world.run(job_id)
    job = world.store.jobs[job_id]
    assert job.state == "succeeded" and job.outcome == "resolved"
    assert "cw_resolved_status_id" in (job.status_transition_skipped_reason or "")
    assert job.verified_status_id is None
    assert world.provider.count("update_ticket_status") == 0
    assert world.provider.count("get_ticket") == 0


def test_status_not_applied_is_retried_with_backoff_until_it_verifies(world: World) -> None:
    world.configure_statuses()
    world.provider.ignore_status_changes = 2  # first PATCH and first re-PATCH do not stick
    job_id = world.request(world.session("1004"))

    world.run(job_id)

    job = world.store.jobs[job_id]
    assert job.state == "succeeded" and job.verified_status_id == 42
    failures = [e for e in world.store.events if e.event == "verification_failed"]
    assert len(failures) == 2
    assert world.sleeps == [0.5, 1.0]  # exponential, from the policy's base
    assert len(world.provider.notes["1004"]) == 1


def test_status_that_never_applies_fails_the_job_with_did_not_verify(world: World) -> None:
    world.configure_statuses()
    world.provider.ignore_status_changes = 100
    job_id = world.request(world.session("1005"))

    result = world.run(job_id)

    job = world.store.jobs[job_id]
    assert result.action is Action.FAILED
    assert job.state == JobState.FAILED and job.step == Step.VERIFY
    assert job.error == {"code": "status_verification_failed", "message": job.error_message}
    assert "did not verify" in (job.error_message or "")
    failures = [e for e in world.store.events if e.event == "verification_failed"]
    assert len(failures) == world.policy.verify_attempts - 1  # the last one fails the job
    assert job.attempts == world.policy.verify_attempts
    assert len(world.sleeps) == world.policy.verify_attempts - 1
    assert max(world.sleeps) <= world.policy.verify_backoff_max
    assert len(world.provider.notes["1005"]) == 1
    assert world.store.sessions[job.session_id].status == SessionStatus.ACTIVE


def test_transient_psa_failures_are_retried_and_honour_retry_after(world: World) -> None:
    world.configure_statuses()
    world.provider.fail_next["post_note"] = [
        PsaTransientError("429", retry_after=7.0),
        PsaTransientError("503"),
    ]
    job_id = world.request(world.session("1006"))
    pipeline = world.pipeline()
    pipeline.run_step(job_id, Step.DRAFT, "d")

    first = pipeline.run_step(job_id, Step.POST_NOTE, "d")
    assert first.action is Action.RETRY and first.countdown >= 7.0
    assert world.store.jobs[job_id].state == JobState.RETRYING
    assert world.store.jobs[job_id].error == {"code": "psa_unavailable", "message": "429"}

    world.run(job_id)
    assert world.store.jobs[job_id].state == JobState.SUCCEEDED
    assert len(world.provider.notes["1006"]) == 1


def test_retry_after_beyond_the_broker_limit_parks_the_job_in_the_database(world: World) -> None:
    world.provider.fail_next["post_note"] = [PsaTransientError("429", retry_after=3600.0)]
    job_id = world.request(world.session("1007"))
    world.pipeline().run_step(job_id, Step.DRAFT, "d")

    result = world.pipeline().run_step(job_id, Step.POST_NOTE, "d")

    job = world.store.jobs[job_id]
    assert result.action is Action.PARKED
    assert job.state == JobState.RETRYING and job.delivery_id is None
    assert job.due_at is not None and (job.due_at - world.clock()).total_seconds() >= 3600


def test_transient_failures_stop_after_the_attempt_budget(world: World) -> None:
    world.provider.fail_next["post_note"] = [PsaTransientError("503")] * 50
    job_id = world.request(world.session("1008"))

    result = world.run(job_id)

    job = world.store.jobs[job_id]
    assert result.action is Action.FAILED
    assert job.error_code == "psa_unavailable" and "gave up after" in (job.error_message or "")
    assert world.provider.count("post_note") == world.policy.max_attempts


def test_permanent_psa_error_fails_at_once(world: World) -> None:
    world.provider.fail_next["post_note"] = [PsaAuthError("401 bad credentials")]
    job_id = world.request(world.session("1009"))
    world.run(job_id)
    job = world.store.jobs[job_id]
    assert (job.state, job.error_code) == ("failed", "psa_auth_failed")
    assert world.provider.count("post_note") == 1


def test_note_stored_but_answer_lost_is_found_not_posted_again(world: World) -> None:
    world.configure_statuses()
    world.provider.drop_after_post = 1
    job_id = world.request(world.session("1010"))

    world.run(job_id)

    job = world.store.jobs[job_id]
    [note] = world.provider.notes["1010"]
    assert job.state == "succeeded" and job.external_id == note.id
    assert world.provider.count("post_note") == 1
    assert world.provider.count("find_note") == 1


def test_every_step_run_twice_reaches_the_same_end_state(world: World) -> None:
    """Brokers deliver at least once: each step's message arrives twice, by another delivery
    after the first completed, and the end state matches a single run."""
    world.configure_statuses()
    once = world.request(world.session("1011"))
    world.run(once)
    twice = world.request(world.session("1012"))
    pipeline = world.pipeline()
    for step in PIPELINE:
        for delivery in ("first", "redelivered"):
            pipeline.run_step(twice, step, delivery)

    def shape(job_id: str, ticket: str) -> tuple[object, ...]:
        job = world.store.jobs[job_id]
        return (
            job.state,
            job.step,
            job.outcome,
            job.verified_status_id,
            len(world.provider.notes[ticket]),
            world.provider.tickets[ticket].status_id,
        )

    assert (
        shape(twice, "1012") == shape(once, "1011") == ("succeeded", "done", "resolved", 42, 1, 42)
    )
    assert world.provider.count("post_note") == 2  # one per job


def test_a_step_redelivered_while_its_worker_died_mid_post_finds_the_note(world: World) -> None:
    world.configure_statuses()
    job_id = world.request(world.session("1013"))
    pipeline = world.pipeline()
    pipeline.run_step(job_id, Step.DRAFT, "d")
    # Worker A records its intent and the PSA stores the note, then A dies before recording.
    job = world.store.jobs[job_id]
    assert world.store.jobs[job_id].step == Step.POST_NOTE
    world.provider.post_note("1013", f"{job.markdown}\n\n— {job.note_marker}", NoteType.RESOLUTION)
    job.post_started_at = world.clock()
    job.state, job.delivery_id = JobState.RUNNING, "worker-a"
    # The same message is redelivered to worker B (same delivery id: acks_late).
    world.run(job_id, delivery="worker-a")
    assert len(world.provider.notes["1013"]) == 1
    assert world.store.jobs[job_id].external_id == world.provider.notes["1013"][0].id


def test_a_step_owned_by_a_live_worker_is_not_claimed_by_another(world: World) -> None:
    job_id = world.request(world.session("1014"))
    pipeline = world.pipeline()
    pipeline.run_step(job_id, Step.DRAFT, "a")
    job = world.store.jobs[job_id]
    job.state, job.delivery_id = JobState.RUNNING, "worker-a"
    job.due_at = world.clock.now.replace(year=2027)

    assert pipeline.run_step(job_id, Step.POST_NOTE, "worker-b").action is Action.SKIPPED
    assert world.provider.count("post_note") == 0


def test_transition_is_a_no_op_when_the_ticket_already_has_the_target(world: World) -> None:
    world.configure_statuses()
    world.provider.add_ticket("1015", status_id=42)
    job_id = world.request(world.session("1015"))
    world.run(job_id)
    assert world.provider.count("update_ticket_status") == 0
    assert world.store.jobs[job_id].verified_status_id == 42


def test_post_without_markdown_is_drafted_in_the_draft_step(world: World) -> None:
    job_id = world.request(world.session(ticket_id=None), markdown=None)
    world.run(job_id)
    events = [e.event for e in world.store.events if e.job_id == job_id]
    assert "drafted" in events
    assert world.store.jobs[job_id].markdown == "drafted resolve"


@pytest.mark.parametrize("step", PIPELINE)
def test_a_step_for_a_finished_job_is_skipped(world: World, step: Step) -> None:
    job_id = world.request(world.session(ticket_id=None))
    world.run(job_id)
    before = copy.deepcopy(world.store.jobs[job_id])
    assert world.pipeline().run_step(job_id, step, "late").action is Action.SKIPPED
    assert world.store.jobs[job_id] == before


def test_a_failed_post_is_looked_for_only_after_the_psa_had_time_to_store_it(
    world: World,
) -> None:
    """A timed-out POST may still be running on the PSA: retrying at once would not find the
    note yet and post a second one."""
    world.provider.fail_next["post_note"] = [PsaTransientError("timed out after 30 s")]
    job_id = world.request(world.session("1016"))
    world.pipeline().run_step(job_id, Step.DRAFT, "d")
    result = world.pipeline().run_step(job_id, Step.POST_NOTE, "d")
    assert result.action is Action.RETRY
    assert result.countdown >= world.policy.post_settle
