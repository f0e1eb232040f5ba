from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes import FakePsaProvider, FakeQueue, FakeRegistry, FakeUnitOfWork, Store
from writeback.domain import services
from writeback.domain.drafting import Drafting, DraftPolicy, fingerprint, render_escalation
from writeback.domain.model import (
    AccountSettings,
    Draft,
    JobKind,
    PromptInput,
    PsaConnection,
    Step,
)
from writeback.domain.pipeline import Action, StepResult, WritebackPipeline
from writeback.domain.ports import JobFeed
from writeback.domain.redaction import Redactor
from writeback.domain.retry import RetryPolicy
from writeback.domain.status_targets import StatusCatalog


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class World:
    """One account with a ConnectWise connection, all in memory."""

    store: Store
    provider: FakePsaProvider
    queue: FakeQueue
    clock: FakeClock
    policy: RetryPolicy
    principal: services.Principal
    connection_id: int
    sleeps: list[float] = field(default_factory=list)
    drafter: CountingDrafter = field(default_factory=lambda: CountingDrafter())
    statuses: StatusCatalog = field(default_factory=lambda: StatusCatalog(FakeClock()))
    feed: JobFeed | None = None

    @property
    def drafting(self) -> Drafting:
        return Drafting(drafter=self.drafter, redactor=Redactor(), policy=DraftPolicy())

    def uow(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.store)

    def pipeline(self) -> WritebackPipeline:
        return WritebackPipeline(
            uow=self.uow,
            registry=FakeRegistry(self.provider),
            drafting=self.drafting,
            statuses=self.statuses,
            policy=self.policy,
            clock=self.clock,
            sleep=self.sleeps.append,
            feed=self.feed,
        )

    def configure_statuses(self, resolved: int | None = 42, escalated: int | None = 43) -> None:
        self.store.settings[self.principal.account_id] = AccountSettings(
            self.principal.account_id, resolved, escalated
        )

    def session(self, ticket_id: str | None = "1001") -> int:
        if ticket_id is not None and ticket_id not in self.provider.tickets:
            self.provider.add_ticket(ticket_id)
        session = services.create_session(
            self.principal,
            session_type="chat",
            intake_type="free_text",
            intake_content={"text": "Printer offline"},
            conversation_messages=[{"role": "assistant", "content": "Restarted the spooler."}],
            psa_connection_id=self.connection_id if ticket_id else None,
            psa_ticket_id=ticket_id,
            uow=self.uow,
            clock=self.clock,
        )
        assert session.id is not None
        return session.id

    def request(
        self,
        session_id: int,
        kind: JobKind = JobKind.RESOLVE,
        markdown: str | None = "## Resolution\nRestarted the spooler.",
    ) -> str:
        job = services.request_writeback(
            self.principal,
            session_id,
            kind,
            markdown,
            uow=self.uow,
            queue=self.queue,
            clock=self.clock,
            enqueue_grace=self.policy.enqueue_grace,
            feed=self.feed,
        )
        return job.id

    def run(self, job_id: str, delivery: str = "delivery-1", max_runs: int = 50) -> StepResult:
        """Drive the job through its steps as a worker would, Celery retries included."""
        pipeline = self.pipeline()
        result = StepResult(Action.SKIPPED)
        for _ in range(max_runs):
            step = Step(self.store.jobs[job_id].step)
            if step is Step.DONE:
                return result
            result = pipeline.run_step(job_id, step, delivery)
            if result.action in (Action.FAILED, Action.FINISHED, Action.SKIPPED, Action.PARKED):
                return result
            if result.action is Action.RETRY:
                self.clock.advance(result.countdown)
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
    store = Store()
    clock = FakeClock()
    issued = services.create_account("acme", uow=lambda: FakeUnitOfWork(store), clock=clock)
    principal = services.Principal(issued.account_id, issued.user_id)
    connection = PsaConnection(
        account_id=principal.account_id,
        provider="connectwise",
        site_url="https://cw.example.com",
        company_id="ACME",
        credentials_encrypted=b"sealed",
        created_at=clock(),
    )
    FakeUnitOfWork(store).connections.add(connection)
    assert connection.id is not None
    policy = RetryPolicy(verify_backoff_base=0.5, verify_backoff_max=2.0)
    return World(store, FakePsaProvider(), FakeQueue(), clock, policy, principal, connection.id)
