"""A running step's heartbeat keeps its lease alive by the database's clock, and stops (and
says so) when it loses the job."""

from __future__ import annotations

from datetime import timedelta

from tests.support import wait_until
from tests.unit.conftest import World
from writeback.domain.lease import LeaseKeeper


def _claimed(world: World) -> tuple[str, str]:
    job_id = world.request(world.session("7001"))
    _, _, message_id = world.queue.sent[-1]
    with world.uow() as tx:
        job = tx.jobs.get(job_id)
        assert job is not None
        job.claim(message_id, 0.3, world.clock())
        assert tx.jobs.save(job)
        tx.commit()
    return job_id, message_id


def test_the_heartbeat_renews_the_lease_while_the_step_runs(world: World) -> None:
    job_id, message_id = _claimed(world)
    keeper = LeaseKeeper(uow=world.uow, lease=0.3)
    first = world.job(job_id).lease_until
    world.clock.advance(60)  # time the step spends on the PSA
    renewed_until = world.clock() + timedelta(seconds=0.3)  # by the database's clock
    with keeper.keep(job_id, message_id) as lease:  # beats every lease / 3 = 0.1 s
        wait_until(lambda: world.job(job_id).lease_until == renewed_until, timeout=5)
    assert first is not None and first < renewed_until
    assert not lease.lost


def test_a_lost_lease_is_noticed_and_not_renewed_again(world: World) -> None:
    job_id, message_id = _claimed(world)
    world.clock.advance(1)
    world.scheduler.tick()  # the lease ran out: the job is someone else's now
    recovered = world.job(job_id)
    keeper = LeaseKeeper(uow=world.uow, lease=0.3)
    with keeper.keep(job_id, message_id) as lease:
        wait_until(lambda: lease.lost, timeout=5)  # the heartbeat ran, and was refused
    assert world.job(job_id).lease_until == recovered.lease_until is None
    assert world.job(job_id).message_id != message_id
