"""The pipeline's behaviour on in-memory fakes: outcomes, retries, and safety when run twice."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest

from tests.fake_db import FakeUnitOfWork
from tests.unit.conftest import World
from writeback.domain.errors import (
    BudgetWait,
    CredentialsUnreadable,
    LeaseLost,
    PsaAuthError,
    PsaRejected,
    PsaTransientError,
    SiteUrlRefused,
)
from writeback.domain.fencing import Fence
from writeback.domain.lease import Lease
from writeback.domain.model import PIPELINE, JobKind, JobState, NoteType, SessionStatus, Step
from writeback.domain.pipeline import Action, note_text


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
    assert "resolved_status_id not set" in (job.status_transition_skipped_reason or "")
    assert job.verified_status_id is None
    assert world.provider.count("update_ticket_status") == 0
    assert world.provider.count("get_ticket") == 0


def _verify_failures(world: World, job_id: str) -> list[str]:
    [verify] = [e for e in world.store.events if e.job_id == job_id and e.step == Step.VERIFY]
    return list(verify.detail.get("failed_attempts", []))


def test_status_not_applied_is_retried_with_backoff_until_it_verifies(world: World) -> None:
    world.configure_statuses()
    world.provider.ignore_status_changes = 2  # first PATCH and first re-PATCH do not stick
    job_id = world.request(world.session("1004"))

    world.run(job_id)

    job = world.job(job_id)
    assert job.state == "succeeded" and job.verified_status_id == 42
    assert len(_verify_failures(world, job_id)) == 2
    assert world.sleeps == [0.5, 1.0]  # exponential, from the policy's base
    assert len(world.provider.notes["1004"]) == 1


def test_status_that_never_applies_fails_the_job_with_did_not_verify(world: World) -> None:
    world.configure_statuses()
    world.provider.ignore_status_changes = 100
    job_id = world.request(world.session("1005"))

    result = world.run(job_id)

    job = world.job(job_id)
    assert result.action is Action.FAILED
    assert job.state == JobState.FAILED and job.step == Step.VERIFY
    assert job.error == {"code": "status_verification_failed", "message": job.error_message}
    assert "did not verify" in (job.error_message or "")
    assert len(world.sleeps) == world.policy.verify_attempts - 1
    assert max(world.sleeps) <= world.policy.verify_backoff_max
    assert len(world.provider.notes["1005"]) == 1
    assert world.store.sessions[job.session_id].status == SessionStatus.ACTIVE


def test_a_429_before_anything_was_posted_is_retried_after_exactly_its_retry_after(
    world: World,
) -> None:
    world.configure_statuses()
    world.provider.fail_next["post_note"] = [PsaTransientError("429", retry_after=1.0)]
    job_id = world.request(world.session("1006"))
    world.deliver()  # draft
    started = world.clock()

    assert world.deliver().action is Action.HELD  # type: ignore[union-attr]
    job = world.job(job_id)
    assert job.state == JobState.RETRYING and job.message_id is None  # held, no message
    assert job.error == {"code": "psa_unavailable", "message": "429"}
    assert job.due_at == started + timedelta(seconds=1)  # no post-settle: nothing was sent

    world.run(job_id)
    assert world.job(job_id).state == JobState.SUCCEEDED
    assert len(world.provider.notes["1006"]) == 1


def test_a_lost_answer_to_a_sent_post_waits_the_settle_time_then_finds_the_note(
    world: World,
) -> None:
    """A timed-out POST may still be running on the PSA: retrying at once would not find the
    note yet and post a second one."""
    world.provider.drop_after_post = 1  # stored, then the answer is lost (ambiguous)
    job_id = world.request(world.session("1016"))
    world.deliver()
    started = world.clock()
    assert world.deliver().action is Action.HELD  # type: ignore[union-attr]
    assert world.job(job_id).due_at >= started + timedelta(seconds=world.policy.post_settle)  # type: ignore[operator]

    world.run(job_id)
    assert len(world.provider.notes["1016"]) == 1
    assert world.provider.count("find_note") == 1 and world.provider.count("post_note") == 1


def test_a_spent_budget_holds_the_job_without_counting_an_attempt(world: World) -> None:
    world.provider.fail_next["post_note"] = [BudgetWait("budget spent", 3.0)] * 20
    job_id = world.request(world.session("1007"))
    world.deliver()
    for _ in range(20):
        assert world.deliver().action is Action.HELD  # type: ignore[union-attr]
        job = world.job(job_id)
        assert (job.attempts, job.error_code, job.message_id) == (0, None, None)
        world.clock.now = job.due_at  # type: ignore[assignment]
        world.scheduler.tick()
    world.run(job_id)
    assert world.job(job_id).state == JobState.SUCCEEDED  # 20 waits, more than max_attempts
    waits = [e for e in world.store.events if e.event == "budget_wait"]
    assert len(waits) == 20 and all(e.detail["wait"] == 3.0 for e in waits)


def test_transient_failures_stop_after_the_attempt_budget(world: World) -> None:
    world.provider.fail_next["post_note"] = [PsaTransientError("503")] * 50
    job_id = world.request(world.session("1008"))

    result = world.run(job_id)

    job = world.job(job_id)
    assert result.action is Action.FAILED
    assert job.error_code == "psa_unavailable" and "gave up after" in (job.error_message or "")
    assert world.provider.count("post_note") == world.policy.max_attempts


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (PsaAuthError("401 bad credentials"), "psa_auth_failed"),
        (PsaRejected("Autotask: does not have the adequate permissions"), "psa_rejected"),
        (SiteUrlRefused("the site URL resolves to 10.0.0.8"), "site_url_refused"),
        (CredentialsUnreadable("no configured key opens them"), "credentials_unreadable"),
    ],
)
def test_permanent_errors_fail_at_once_with_their_own_code_and_message(
    world: World, error: Exception, code: str
) -> None:
    world.provider.fail_next["post_note"] = [error]
    job_id = world.request(world.session("1009"))
    world.run(job_id)
    job = world.job(job_id)
    assert (job.state, job.error_code, job.error_message) == ("failed", code, str(error))
    assert world.provider.count("post_note") == 1


def test_a_connection_gone_fails_the_job_with_connection_gone(world: World) -> None:
    job_id = world.request(world.session("1017"))
    world.store.connections[world.connection_id].is_active = False
    world.run(job_id)
    assert world.job(job_id).error_code == "connection_gone"


def test_an_unexpected_exception_is_retried_and_keeps_its_message(world: World) -> None:
    world.provider.fail_next["post_note"] = [KeyError("boardId")] * 50
    job_id = world.request(world.session("1018"))
    world.run(job_id)
    job = world.job(job_id)
    assert job.error_code == "internal_error"
    assert job.error_message.startswith("KeyError: 'boardId'")  # type: ignore[union-attr]
    assert world.provider.count("post_note") == world.policy.max_attempts


def test_note_stored_but_answer_lost_is_found_not_posted_again(world: World) -> None:
    world.configure_statuses()
    world.provider.drop_after_post = 1
    job_id = world.request(world.session("1010"))

    world.run(job_id)

    job = world.job(job_id)
    [note] = world.provider.notes["1010"]
    assert job.state == "succeeded" and job.external_id == note.id


def test_every_message_delivered_twice_reaches_the_same_end_state(world: World) -> None:
    """Brokers deliver at least once: each step's message arrives a second time after the
    first run; the duplicate is skipped and changes nothing."""
    world.configure_statuses()
    once = world.request(world.session("1011"))
    world.run(once)
    twice = world.request(world.session("1012"))
    pipeline = world.pipeline()
    while world.job(twice).state is not JobState.SUCCEEDED:
        _, step, message_id = world.queue.sent[-1]
        assert pipeline.run_step(twice, step, message_id).action is not Action.SKIPPED
        assert pipeline.run_step(twice, step, message_id).action is Action.SKIPPED

    def shape(job_id: str, ticket: str) -> tuple[object, ...]:
        job = world.job(job_id)
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


def test_each_step_is_two_transactions_and_one_audit_row(world: World) -> None:
    """Besides: one statement marks each message sent, and one fences each PSA write."""
    world.configure_statuses()
    job_id = world.request(world.session("1019"))
    created = world.store.commits
    world.run(job_id)
    steps, messages, writes = len(PIPELINE), len(PIPELINE) - 1, 2  # the note, the status
    ended = 1  # the finished step's tenant is offered its free slot
    assert world.store.commits - created == 2 * steps + messages + writes + ended
    rows = [e for e in world.store.events if e.job_id == job_id]
    assert [e.event for e in rows] == [
        "created",
        "drafted",
        "note_posted",
        "status_changed",
        "status_verified",
        "succeeded",
    ]


def test_a_worker_that_died_mid_post_is_recovered_and_finds_its_note(world: World) -> None:
    world.configure_statuses()
    job_id = world.request(world.session("1013"))
    world.deliver()  # draft
    _, _, message_id = world.queue.sent[-1]
    # Worker A claims post_note, fences its POST, the PSA stores the note, then A dies.
    with world.uow() as tx:
        job = tx.jobs.get(job_id)
        assert job is not None
        job.claim(message_id, world.policy.step_lease, world.clock())
        job.confirm_write(message_id, world.policy.write_hold, True, world.clock())
        tx.jobs.save(job)
        tx.commit()
    world.provider.post_note("1013", note_text(job), NoteType.RESOLUTION)
    world._delivered += 1  # its message went down with it
    lease_until = world.job(job_id).lease_until
    assert lease_until == world.clock() + timedelta(seconds=world.policy.write_hold)
    world.clock.advance(world.policy.write_hold - 1)
    assert world.scheduler.tick().recovered == 0  # the lease still runs: nobody steals it
    world.clock.advance(2)
    assert world.scheduler.tick().recovered == 1
    # A POST of the dead worker may still be landing: the job looks once it is surely stored.
    stored_by = lease_until + timedelta(seconds=world.policy.look_after_lease)
    assert world.job(job_id).due_at == stored_by > world.clock()

    world.run(job_id)
    assert len(world.provider.notes["1013"]) == 1
    assert world.job(job_id).external_id == world.provider.notes["1013"][0].id
    assert world.job(job_id).redeliveries == 1


def test_a_step_whose_lease_was_taken_over_sends_no_write_and_its_result_is_dropped(
    world: World,
) -> None:
    job_id = world.request(world.session("1014"))
    world.deliver()
    _, _, message_id = world.queue.sent[-1]
    pipeline = world.pipeline()
    ctx = pipeline._claim(job_id, Step.POST_NOTE, message_id)
    assert ctx is not None
    world.clock.advance(world.policy.step_lease + 1)
    world.scheduler.tick()  # the lease ran out: another delivery owns the step now
    with pytest.raises(LeaseLost) as refused:
        pipeline._post_note(ctx)  # the paused worker wakes up and would post
    assert world.provider.notes["1014"] == []
    assert pipeline._record(ctx, refused.value).action is Action.SKIPPED
    assert world.job(job_id).post_started_at is None  # the new owner posts, without settling


def test_a_pause_while_the_fence_confirms_voids_the_write(world: World) -> None:
    job_id = world.request(world.session("1016"))
    world.deliver()
    _, _, message_id = world.queue.sent[-1]
    ctx = world.pipeline()._claim(job_id, Step.POST_NOTE, message_id)
    assert ctx is not None

    def stalling() -> FakeUnitOfWork:  # the worker freezes while it confirms its lease
        world.clock.advance(world.policy.write_margin + 1)
        return FakeUnitOfWork(world.store)

    guard = Fence(stalling, world.policy, world.clock.monotonic).guard(
        ctx.job, message_id, Lease(), world.clock, posting=True
    )
    with pytest.raises(LeaseLost, match="paused"):
        guard()


def test_transition_is_a_no_op_when_the_ticket_already_has_the_target(world: World) -> None:
    world.configure_statuses()
    world.provider.add_ticket("1015", status_id=42)
    job_id = world.request(world.session("1015"))
    world.run(job_id)
    assert world.provider.count("update_ticket_status") == 0
    assert world.job(job_id).verified_status_id == 42


def test_post_without_markdown_is_drafted_in_the_draft_step(world: World) -> None:
    job_id = world.request(world.session(ticket_id=None), markdown=None)
    world.run(job_id)
    events = [e.event for e in world.store.events if e.job_id == job_id]
    assert "drafted" in events
    assert world.job(job_id).markdown == "drafted resolve"


@pytest.mark.parametrize("step", PIPELINE)
def test_a_message_for_a_finished_job_is_skipped(world: World, step: Step) -> None:
    job_id = world.request(world.session(ticket_id=None))
    world.run(job_id)
    before = copy.deepcopy(world.job(job_id))
    assert world.pipeline().run_step(job_id, step, "late").action is Action.SKIPPED
    assert world.job(job_id) == before
