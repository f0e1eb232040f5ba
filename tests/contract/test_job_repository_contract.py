"""The job repository's contract, run against the in-memory fake (what the unit tests and the
lifecycle simulator use) and the SQL repository on PostgreSQL and SQLite, so the fake cannot
drift from what the database does: guarded saves, leases judged by the database's clock, send
records, the partial unique indexes, the admission lock and the sweep's skipped locks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import pytest

from tests.fake_db import FakeUnitOfWork, Store
from tests.support import create_database, drop_database
from writeback.adapters.db import migrate
from writeback.adapters.db.engine import create_engine, session_factory
from writeback.adapters.db.orm import start_mappers
from writeback.adapters.db.repositories import SqlAlchemyUnitOfWork
from writeback.domain.errors import AlreadyClosed, Conflict, JobInFlight
from writeback.domain.model import (
    Account,
    AiSession,
    JobKind,
    JobState,
    PsaConnection,
    Step,
    User,
    WritebackJob,
    utcnow,
)
from writeback.domain.ports import UnitOfWork
from writeback.domain.retry import RetryPolicy

BACKENDS = ("fake", "postgresql", "sqlite")


@dataclass
class Db:
    uow: Callable[[], UnitOfWork]
    name: str
    account_id: int = 0
    user_id: int = 0
    connection_id: int = 0

    def session(self, ticket: str | None = "T-1") -> int:
        now = utcnow()
        session = AiSession(
            account_id=self.account_id,
            user_id=self.user_id,
            session_type="chat",
            intake_type="free_text",
            created_at=now,
            updated_at=now,
            psa_connection_id=self.connection_id if ticket else None,
            psa_ticket_id=ticket,
        )
        with self.uow() as tx:
            tx.sessions.add(session)
            tx.commit()
        assert session.id is not None
        return session.id

    def job(self, session_id: int, kind: JobKind = JobKind.RESOLVE, **fields: object) -> str:
        with self.uow() as tx:
            now = tx.now()
            job = WritebackJob(
                account_id=self.account_id,
                session_id=session_id,
                kind=kind,
                tenant=f"psa:{self.connection_id}",
                psa_connection_id=self.connection_id,
                psa_ticket_id="T-1",
                created_at=now,
                updated_at=now,
                due_at=now,
                **fields,  # type: ignore[arg-type]
            )
            tx.jobs.add(job)
            tx.commit()
        return job.id

    def load(self, job_id: str) -> WritebackJob:
        with self.uow() as tx:
            job = tx.jobs.get(job_id)
        assert job is not None
        return job

    def change(self, job_id: str, move: Callable[[WritebackJob, datetime], object]) -> bool:
        with self.uow() as tx:
            job = tx.jobs.get(job_id)
            assert job is not None
            move(job, tx.now())
            saved = tx.jobs.save(job)
            tx.commit()
        return saved


def _seed(db: Db) -> Db:
    now = utcnow()
    with db.uow() as tx:
        account = Account(name="acme", created_at=now)
        tx.accounts.add_account(account)
        assert account.id is not None
        user = User(account_id=account.id, created_at=now)
        tx.accounts.add_user(user)
        connection = PsaConnection(
            account_id=account.id,
            provider="connectwise",
            site_url="https://psa.example.com",
            company_id="ACME",
            credentials_encrypted=b"sealed",
            created_at=now,
        )
        tx.connections.add(connection)
        tx.commit()
    assert user.id is not None and connection.id is not None
    db.account_id, db.user_id, db.connection_id = account.id, user.id, connection.id
    return db


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    if request.param == "fake":
        store = Store()  # the database's clock: the real one, as the servers'
        yield _seed(Db(partial(FakeUnitOfWork, store), "fake"))
        return
    start_mappers()
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'contract.db'}"
        migrate.upgrade(url)
    else:
        url = create_database("wb_contract")
    engine = create_engine(url)
    try:
        yield _seed(Db(partial(SqlAlchemyUnitOfWork, session_factory(engine)), request.param))
    finally:
        engine.dispose()
        if request.param == "postgresql":
            drop_database(url)


def _claimed(db: Db, lease: float) -> tuple[str, str]:
    job_id = db.job(db.session())
    assert db.change(job_id, lambda job, now: job.admit("m1", now))
    assert db.change(job_id, lambda job, now: job.claim("m1", lease, now))
    return job_id, "m1"


def test_a_save_lands_only_on_the_version_it_was_loaded_at(db: Db) -> None:
    job_id = db.job(db.session())
    first, second = db.load(job_id), db.load(job_id)
    with db.uow() as tx:
        first.admit("m1", tx.now())
        assert tx.jobs.save(first)
        tx.commit()
    with db.uow() as tx:
        second.admit("m2", tx.now())
        assert not tx.jobs.save(second)
    assert db.load(job_id).message_id == "m1"


def test_leases_are_judged_by_the_databases_clock(db: Db) -> None:
    live, owner = _claimed(db, lease=60)
    gone, _ = _claimed(db, lease=-1)
    for job_id, alive in ((live, True), (gone, False)):
        with db.uow() as tx:
            job = tx.jobs.get(job_id)
            assert job is not None
            job.confirm_write(owner, 30, True, tx.now())
            assert tx.jobs.save(job, lease_alive=True) is alive  # a fenced write
            tx.commit()
    with db.uow() as tx:
        now = tx.now()
        assert [j.id for j in tx.jobs.lease_expired(now, 10)] == [gone]
        expired = tx.jobs.get(gone)
        taken = tx.jobs.get(live)
        assert expired is not None and taken is not None
        expired.recover("m9", now, counted=True, policy=RetryPolicy())
        taken.recover("m9", now, counted=True, policy=RetryPolicy())
        assert tx.jobs.save(expired, lease_expired=True)  # a takeover, once it ran out
        assert not tx.jobs.save(taken, lease_expired=True)
        tx.commit()


def test_a_heartbeat_renews_by_the_databases_clock_and_keeps_the_version(db: Db) -> None:
    job_id, owner = _claimed(db, lease=1)
    before = db.load(job_id)
    with db.uow() as tx:
        now = tx.now()
        assert tx.jobs.heartbeat(job_id, owner, 300)
        assert not tx.jobs.heartbeat(job_id, "someone-else", 300)
        tx.commit()
    after = db.load(job_id)
    assert after.version == before.version
    assert after.lease_until is not None
    assert timedelta(seconds=299) < after.lease_until - now < timedelta(seconds=301)
    with db.uow() as tx:  # never shorter: a fenced write may have lengthened it
        assert tx.jobs.heartbeat(job_id, owner, 5)
        tx.commit()
    assert db.load(job_id).lease_until == after.lease_until


def test_a_send_is_recorded_once_for_its_own_message(db: Db) -> None:
    job_id = db.job(db.session())
    assert db.change(job_id, lambda job, now: job.admit("m1", now))
    with db.uow() as tx:
        later = tx.now() + timedelta(seconds=5)
        assert [j.id for j in tx.jobs.unsent(later, 10)] == [job_id]
        assert tx.jobs.outstanding(10) == []
        tx.jobs.sent(job_id, "another")
        tx.jobs.sent(job_id, "m1")
        tx.commit()
    stamped = db.load(job_id).sent_at
    with db.uow() as tx:
        tx.jobs.sent(job_id, "m1")
        assert tx.jobs.unsent(later, 10) == []
        assert [j.id for j in tx.jobs.outstanding(10)] == [job_id]
        tx.commit()
    assert stamped is not None and db.load(job_id).sent_at == stamped


def test_one_job_in_flight_per_session_and_one_close_per_kind(db: Db) -> None:
    session_id = db.session()
    first = db.job(session_id)
    with pytest.raises(JobInFlight) as in_flight:
        db.job(session_id, JobKind.ESCALATE)
    assert in_flight.value.job_id == first

    def succeed(job: WritebackJob, now: datetime) -> None:
        job.state, job.step = JobState.SUCCEEDED, Step.DONE

    assert db.change(first, succeed)
    with pytest.raises(AlreadyClosed) as closed:
        db.job(session_id)
    assert closed.value.job_id == first
    db.job(session_id, JobKind.ESCALATE)  # the other kind closes it once too


def test_a_second_close_found_at_an_upgrade_is_out_of_the_index(db: Db) -> None:
    session_id = db.session()
    first = db.job(session_id, state=JobState.SUCCEEDED, step=Step.DONE)
    db.job(session_id, state=JobState.SUCCEEDED, step=Step.DONE, duplicate_of=first)
    with pytest.raises(Conflict):
        db.job(session_id)


def test_the_ticket_is_held_by_a_job_in_flight_or_one_that_may_have_posted(db: Db) -> None:
    session_id = db.session()
    with db.uow() as tx:
        assert tx.jobs.ticket_holder(session_id) is None
    job_id = db.job(session_id)
    with db.uow() as tx:
        holder = tx.jobs.ticket_holder(session_id)
    assert holder is not None and holder.id == job_id

    def failed_after_posting(job: WritebackJob, now: datetime) -> None:
        job.state, job.post_started_at = JobState.FAILED, now

    assert db.change(job_id, failed_after_posting)
    with db.uow() as tx:
        holder = tx.jobs.ticket_holder(session_id)
    assert holder is not None and holder.id == job_id


def test_the_load_for_a_step_has_the_jobs_own_connection_and_the_databases_time(db: Db) -> None:
    session_id = db.session()
    job_id = db.job(session_id)
    with db.uow() as tx:
        session = tx.sessions.get(session_id)
        assert session is not None
        session.psa_connection_id, session.psa_ticket_id = None, None  # edited after the post
        tx.commit()
    with db.uow() as tx:
        before = tx.now()
        loaded = tx.jobs.for_step(job_id)
    assert loaded is not None and loaded.connection is not None
    assert loaded.connection.id == db.connection_id
    assert abs(loaded.now - before) < timedelta(seconds=5)


def test_the_last_sweep_is_recorded(db: Db) -> None:
    with db.uow() as tx:
        now = tx.now()
        tx.jobs.record_sweep(now)
        tx.commit()
    with db.uow() as tx:
        assert tx.jobs.last_sweep() == now


# Two transactions at once: only where the backend has row locks (SQLite runs one writer).


def _concurrent(db: Db) -> None:
    if db.name == "sqlite":
        pytest.skip("SQLite runs one writer at a time: there is nothing to take turns with")


def test_an_admission_never_waits_for_another(db: Db) -> None:
    _concurrent(db)
    tenant = f"psa:{db.connection_id}"
    with db.uow() as first:
        assert first.jobs.occupied_slots(tenant) == 0
        with db.uow() as second:
            assert second.jobs.occupied_slots(tenant) is None  # first admits: not a wait
    with db.uow() as tx:
        assert tx.jobs.occupied_slots(tenant) == 0


def test_the_sweep_skips_a_row_another_transaction_holds(db: Db) -> None:
    _concurrent(db)
    job_id, _ = _claimed(db, lease=-1)
    with db.uow() as holder:
        job = holder.jobs.get(job_id)
        assert job is not None
        job.due_at = holder.now()
        assert holder.jobs.save(job)  # a transaction frozen before its commit
        with db.uow() as sweep:
            assert sweep.jobs.lease_expired(sweep.now(), 10) == []
    with db.uow() as sweep:
        assert [j.id for j in sweep.jobs.lease_expired(sweep.now(), 10)] == [job_id]
