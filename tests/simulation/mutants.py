"""Each fix of the partial-failure issue (#17), undone: the simulator must find every one within
its default seeds (`test_simulation.py`), or it proves nothing. `python -m tests.simulation
--mutant NAME --seeds N` runs seeds with one undone."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from unittest import mock

from tests.fake_db import FakeJobs
from writeback import celery_config
from writeback.domain import pipeline
from writeback.domain.fencing import Fence
from writeback.domain.model import StepLoad
from writeback.domain.scheduler import Scheduler


@contextmanager
def no_fence() -> Iterator[None]:
    """A paused worker: writes go out without re-confirming the lease first."""
    with mock.patch.object(Fence, "guard", lambda *args, **kwargs: lambda: None):
        yield


@contextmanager
def takeover_ignores_the_lease() -> Iterator[None]:
    """The heartbeat race: the sweeper reads expired leases without locking them and takes
    over guarded by the version alone, so a heartbeat between the two is lost."""
    save, expired = FakeJobs.save, FakeJobs.lease_expired

    def by_version(self: FakeJobs, job: Any, **guard: bool) -> bool:
        return save(self, job, lease_alive=guard.get("lease_alive", False))

    def unlocked(self: FakeJobs, now: Any, limit: int) -> Any:
        with mock.patch.object(self.tx, "try_lock", lambda key: True):
            return expired(self, now, limit)

    with (
        mock.patch.object(FakeJobs, "save", by_version),
        mock.patch.object(FakeJobs, "lease_expired", unlocked),
    ):
        yield


@contextmanager
def each_host_its_own_clock() -> Iterator[None]:
    """Clock skew: every process reads and judges times by its own host's clock."""
    from tests.simulation.world import World

    init = World.__init__

    def skewed(self: World, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        sim = self.sim
        self.store.clock = lambda: sim.datetime(sim.current.process if sim.current else None)

    with mock.patch.object(World, "__init__", skewed):
        yield


@contextmanager
def steps_follow_the_session() -> Iterator[None]:
    """The edit mid-job: each step writes to the ticket its session names now, and a session's
    ticket may change under a job."""
    for_step = FakeJobs.for_step

    def following(self: FakeJobs, job_id: str) -> StepLoad | None:
        loaded = for_step(self, job_id)
        if loaded is None or loaded.session is None:
            return loaded
        job, session = loaded.job, loaded.session
        job.psa_connection_id, job.psa_ticket_id = session.psa_connection_id, session.psa_ticket_id
        connection = self.tx.row("connections", session.psa_connection_id)
        return StepLoad(job, session, connection, loaded.now)

    with (
        mock.patch.object(FakeJobs, "for_step", following),
        mock.patch.object(FakeJobs, "ticket_holder", lambda self, session_id: None),
    ):
        yield


@contextmanager
def _celery(**changes: Any) -> Iterator[None]:
    build = celery_config.build

    def changed(settings: Any) -> dict[str, Any]:
        conf = build(settings)
        for key, value in changes.items():
            if value is None:
                conf.pop(key, None)
            else:
                conf[key] = value(conf) if callable(value) else value
        return conf

    with mock.patch.object(celery_config, "build", changed):
        yield


def early_acks() -> AbstractContextManager[None]:
    """Stranded messages: acknowledged as their step starts, prefetched, and given back by
    Redis only after an hour."""
    return _celery(
        task_acks_late=False,
        worker_disable_prefetch=None,
        broker_transport_options=lambda conf: {
            **conf.get("broker_transport_options", {}),
            "visibility_timeout": 3600,
        },
    )


@contextmanager
def no_unsent_net() -> Iterator[None]:
    """A process killed between its commit and its send strands the message."""
    with mock.patch.object(Scheduler, "resend_unsent", lambda self, limit=500: 0):
        yield


def sweep_in_the_step_queue() -> AbstractContextManager[None]:
    """The starved sweeper: beat sends the sweep to the step queue, where it expires."""
    return _celery(
        beat_scheduler=None,
        beat_schedule=lambda conf: {
            "sweep": {**conf["beat_schedule"]["sweep"], "options": {"expires": 5.0}}
        },
    )


@contextmanager
def waits_are_attempts() -> Iterator[None]:
    """Outages of our own parts (and the budget) are counted as failed attempts."""
    with mock.patch.object(pipeline, "Wait", type("NotAWait", (Exception,), {})):
        yield


MUTANTS: dict[str, Callable[[], AbstractContextManager[None]]] = {
    "no_fence": no_fence,
    "takeover_ignores_the_lease": takeover_ignores_the_lease,
    "each_host_its_own_clock": each_host_its_own_clock,
    "steps_follow_the_session": steps_follow_the_session,
    "early_acks": early_acks,
    "no_unsent_net": no_unsent_net,
    "sweep_in_the_step_queue": sweep_in_the_step_queue,
    "waits_are_attempts": waits_are_attempts,
}
