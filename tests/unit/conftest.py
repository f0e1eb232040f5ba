from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from tests.fake_db import FakeUnitOfWork, Store
from tests.fakes import FakePsaProvider, FakeQueue, FakeRegistry, FakeSealer
from writeback.domain.accounts import AccountService, Principal
from writeback.domain.connections import ConnectionService
from writeback.domain.drafting import Drafting, DraftPolicy, fingerprint, render_escalation
from writeback.domain.jobs import JobService
from writeback.domain.lease import LeaseKeeper
from writeback.domain.model import (
    FINAL_STATES,
    AccountSettings,
    Draft,
    JobKind,
    PromptInput,
    PsaConnection,
    WritebackJob,
)
from writeback.domain.pipeline import Action, StepResult, WritebackPipeline
from writeback.domain.ports import JobFeed
from writeback.domain.redaction import Redactor
from writeback.domain.retry import RetryPolicy
from writeback.domain.scheduler import Scheduler
from writeback.domain.sessions import SessionService
from writeback.domain.status_targets import StatusCatalog

EPOCH = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class FakeClock:
    """The database's clock and the workers' monotonic one, moved by the test."""

    def __init__(self) -> None:
        self.now = EPOCH

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def monotonic(self) -> float:
        return (self.now - EPOCH).total_seconds()


@dataclass
class World:
    """One account with a ConnectWise connection, all in memory."""

    store: Store
    provider: FakePsaProvider
    queue: FakeQueue
    clock: FakeClock
    policy: RetryPolicy
    principal: Principal
    connection_id: int
    sleeps: list[float] = field(default_factory=list)
    drafter: CountingDrafter = field(default_factory=lambda: CountingDrafter())
    statuses: StatusCatalog = field(default_factory=lambda: StatusCatalog(FakeClock()))
    _delivered: int = 0
    feed: JobFeed | None = None

    @property
    def drafting(self) -> Drafting:
        return Drafting(drafter=self.drafter, redactor=Redactor(), policy=DraftPolicy())

    def uow(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.store, self.feed)

    def pipeline(self) -> WritebackPipeline:
        return WritebackPipeline(
            uow=self.uow,
            queue=self.queue,
            scheduler=self.scheduler,
            registry=FakeRegistry(self.provider),
            drafting=self.drafting,
            statuses=self.statuses,
            policy=self.policy,
            leases=LeaseKeeper(uow=self.uow, lease=self.policy.step_lease),
            sleep=self.sleeps.append,
            monotonic=self.clock.monotonic,
            fences=lambda: FakeUnitOfWork(self.store),
        )

    @property
    def accounts(self) -> AccountService:
        return AccountService(uow=self.uow, reads=self.uow, clock=self.clock)

    @property
    def sessions(self) -> SessionService:
        return SessionService(uow=self.uow, reads=self.uow, clock=self.clock)

    @property
    def connections(self) -> ConnectionService:
        return ConnectionService(
            uow=self.uow,
            sealer=FakeSealer(),
            registry=FakeRegistry(self.provider),
            check_url=lambda url: url.rstrip("/"),
            clock=self.clock,
        )

    @property
    def jobs(self) -> JobService:
        return JobService(
            uow=self.uow, reads=self.uow, scheduler=self.scheduler, drafting=self.drafting
        )

    @property
    def scheduler(self) -> Scheduler:
        return Scheduler(uow=self.uow, queue=self.queue, policy=self.policy)

    def configure_statuses(self, resolved: int | None = 42, escalated: int | None = 43) -> None:
        self.store.settings[self.principal.account_id] = AccountSettings(
            self.principal.account_id, resolved, escalated
        )

    def session(self, ticket_id: str | None = "1001") -> int:
        if ticket_id is not None and ticket_id not in self.provider.tickets:
            self.provider.add_ticket(ticket_id)
        session = self.sessions.create(
            self.principal,
            session_type="chat",
            intake_type="free_text",
            intake_content={"text": "Printer offline"},
            conversation_messages=[{"role": "assistant", "content": "Restarted the spooler."}],
            psa_connection_id=self.connection_id if ticket_id else None,
            psa_ticket_id=ticket_id,
        )
        assert session.id is not None
        return session.id

    def request(
        self,
        session_id: int,
        kind: JobKind = JobKind.RESOLVE,
        markdown: str | None = "## Resolution\nRestarted the spooler.",
    ) -> str:
        return self.jobs.request_writeback(self.principal, session_id, kind, markdown).id

    def job(self, job_id: str) -> WritebackJob:
        return self.store.jobs[job_id]

    def deliver(self) -> StepResult | None:
        """Run the oldest message not yet run, as a worker would; None when none is left."""
        if self._delivered >= len(self.queue.sent):
            return None
        job_id, step, message_id = self.queue.sent[self._delivered]
        self._delivered += 1
        return self.pipeline().run_step(job_id, step, message_id)

    def run(self, job_id: str, max_runs: int = 60) -> StepResult:
        """Drive the job to a final state as workers and beat would: run each message, and let
        time pass to the next due wait when the job is held."""
        result = StepResult(Action.SKIPPED)
        for _ in range(max_runs):
            if self.job(job_id).state in FINAL_STATES:
                return result
            delivered = self.deliver()
            if delivered is not None:
                result = delivered
                continue
            due = self.job(job_id).due_at
            if due is not None and due > self.clock():
                self.clock.now = due
            self.scheduler.tick()
        raise AssertionError("job did not settle")


class CountingDrafter:
    """Drafts "drafted <kind>" and counts how often it was asked."""

    def __init__(self) -> None:
        self.calls = 0
        self.markdown: str | None = None  # a fixed answer, e.g. an unsafe one

    def fingerprint(self, prompt: PromptInput) -> str:
        return fingerprint("counting", prompt.fields())

    def draft(self, prompt: PromptInput) -> Draft:
        self.calls += 1
        if self.markdown is None and prompt.kind is JobKind.ESCALATE:
            return Draft(render_escalation("drafted escalate", [], [], "", []), drafter="test")
        return Draft(markdown=self.markdown or f"drafted {prompt.kind}", drafter="test")


@pytest.fixture
def world() -> World:
    clock = FakeClock()
    store = Store(clock=clock)
    uow = partial(FakeUnitOfWork, store)
    issued = AccountService(uow=uow, reads=uow, clock=clock).create_account("acme")
    principal = Principal(issued.account_id, issued.user_id)
    connection = PsaConnection(
        account_id=principal.account_id,
        provider="connectwise",
        site_url="https://cw.example.com",
        company_id="ACME",
        credentials_encrypted=b"sealed",
        created_at=clock(),
    )
    with FakeUnitOfWork(store) as tx:
        tx.connections.add(connection)
        tx.commit()
    assert connection.id is not None
    policy = RetryPolicy(verify_backoff_base=0.5, verify_backoff_max=2.0)
    return World(store, FakePsaProvider(), FakeQueue(), clock, policy, principal, connection.id)
