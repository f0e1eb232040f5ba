"""The sweeper re-enqueues jobs whose message was lost, and gives up after N redeliveries."""

from __future__ import annotations

from tests.unit.conftest import World
from writeback.domain.model import JobState, Step
from writeback.domain.sweeper import sweep


def _sweep(world: World) -> tuple[int, int]:
    report = sweep(uow=world.uow, queue=world.queue, policy=world.policy, clock=world.clock)
    return report.requeued, report.failed


def test_a_fresh_queued_job_is_left_alone(world: World) -> None:
    world.request(world.session(ticket_id=None))
    world.queue.enqueued.clear()
    assert _sweep(world) == (0, 0)
    assert world.queue.enqueued == []


def test_a_job_whose_message_was_lost_is_re_enqueued_from_its_step(world: World) -> None:
    world.queue.broken = True
    job_id = world.request(world.session(ticket_id=None))
    world.queue.broken = False
    world.clock.advance(world.policy.enqueue_grace + 1)

    assert _sweep(world) == (1, 0)
    assert world.queue.enqueued == [(job_id, Step.DRAFT)]
    assert _sweep(world) == (0, 0)  # not again until due again
    events = [e.event for e in world.store.events if e.job_id == job_id]
    assert "requeued" in events


def test_a_running_job_past_its_lease_is_released_and_re_enqueued(world: World) -> None:
    job_id = world.request(world.session("2001"))
    pipeline = world.pipeline()
    pipeline.run_step(job_id, Step.DRAFT, "a")
    # A worker claims post_note and dies without a word.
    with world.uow() as tx:
        assert tx.jobs.claim(
            job_id, Step.POST_NOTE, "dead-worker", world.clock(), world.clock.now.replace(minute=5)
        )
    world.clock.advance(world.policy.step_lease + 1)

    assert _sweep(world) == (1, 0)
    assert world.queue.enqueued[-1] == (job_id, Step.POST_NOTE)
    world.run(job_id, delivery="another-worker")
    assert world.store.jobs[job_id].state == JobState.SUCCEEDED


def test_a_job_lost_too_often_fails_instead_of_looping(world: World) -> None:
    world.queue.broken = True
    job_id = world.request(world.session(ticket_id=None))
    world.queue.broken = False
    for _ in range(world.policy.max_redeliveries):
        world.clock.advance(world.policy.enqueue_grace + 1)
        assert _sweep(world) == (1, 0)
    world.clock.advance(world.policy.enqueue_grace + 1)

    assert _sweep(world) == (0, 1)
    job = world.store.jobs[job_id]
    assert job.state == JobState.FAILED and job.error_code == "delivery_lost"
