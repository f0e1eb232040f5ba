"""The writeback pipeline: one handler per step, each safe to run twice.

A step runs in two transactions around its I/O. The first loads the job with what the step
needs (one joined read, with the database's time) and claims it: the pick-up acknowledges the
job's one outstanding message. The step then talks to the PSA or the model with no transaction
open, its lease renewed by a heartbeat, and every write to the PSA fenced (domain/fencing.py).
A handler only finds things out and returns them as plain data; the second transaction hands
that to the job's own method (`drafted`, `note_posted`, ...), which records it and decides where
the job goes next, and writes the step's one audit row. The next message is sent after that
commit. The step's clock is the claim's database time plus the step's own monotonic time, so a
host whose clock is off still writes the database's times.

Every failure is classified once, where it is understood (`DomainError.failure`): transient
failures are retried with backoff, ambiguous ones (a write whose answer was lost) wait the
settle time and look before writing again, permanent ones fail the job at once. A wait (the
request budget, our own database or Redis, a lost lease) is no failure and no attempt.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from writeback.domain import logcontext
from writeback.domain.drafting import Drafting, Prepared
from writeback.domain.errors import (
    ConnectionGone,
    DomainError,
    Failure,
    SessionGone,
    StatusNotApplied,
    Wait,
)
from writeback.domain.fencing import Fence
from writeback.domain.lease import Lease, LeaseKeeper
from writeback.domain.model import (
    NOTE_TYPE_BY_KIND,
    AccountSettings,
    AiSession,
    Draft,
    JobEvent,
    PsaConnection,
    StatusMapping,
    Step,
    StepFailure,
    TransitionRefused,
    WritebackJob,
)
from writeback.domain.ports import (
    JobQueue,
    Monotonic,
    ProviderRegistry,
    PsaProvider,
    Sleep,
    UnitOfWork,
    UnitOfWorkFactory,
)
from writeback.domain.retry import RetryPolicy
from writeback.domain.scheduler import Scheduler
from writeback.domain.status_targets import StatusCatalog, resolve_target

log = logging.getLogger(__name__)


class Action(enum.StrEnum):
    ADVANCE = "advance"  # step done; the next one is in the broker
    HELD = "held"  # waiting in the database (a retry's backoff, the budget, an outage)
    FAILED = "failed"  # the job ended failed; `message` says why
    SKIPPED = "skipped"  # not ours to run: a stale or duplicate message, or a lost lease
    FINISHED = "finished"  # the job succeeded


@dataclass(frozen=True)
class StepResult:
    action: Action
    message: str = ""
    tenant: str = ""


@dataclass
class Context:
    """What a step needs, loaded with its claim in one transaction."""

    job: WritebackJob
    owner: str  # the message the step runs under
    session: AiSession | None  # None: deleted meanwhile (the step fails session_gone)
    connection: PsaConnection | None
    claimed_at: datetime  # the database's time of the claim
    started: float  # the step's monotonic time then
    settings: AccountSettings | None = None
    status_map: list[StatusMapping] = field(default_factory=list)
    prepared: Prepared | None = None
    cached_draft: Draft | None = None
    resuming: bool = False  # post_note: an earlier attempt may have stored the note
    lease: Lease = field(default_factory=Lease)


# What each handler found out: plain data, recorded by the job's method of the same name.


@dataclass(frozen=True)
class Drafted:
    markdown: str
    drafter: str
    cached: bool
    fresh: tuple[str, Draft] | None = None  # a new draft for the preview cache: (key, draft)


@dataclass(frozen=True)
class NotePosted:
    note_id: str
    target_status_id: int | None
    skipped_reason: str | None
    found: bool  # an earlier attempt's note, found by its marker


@dataclass(frozen=True)
class StatusChanged:
    from_status_id: int | None
    to_status_id: int | None  # None: no target (skipped; the reason is on the job)


@dataclass(frozen=True)
class Verified:
    status_id: int | None
    status_name: str | None
    failed_attempts: list[str]


@dataclass(frozen=True)
class Finalized:
    pass


Found = Drafted | NotePosted | StatusChanged | Verified | Finalized

# What each step sends to the PSA when all goes well, paid from the tenant's budget up front:
# the ticket read (and, resuming, the note search) and the post; a read and the change; a read.
STEP_REQUESTS = {Step.POST_NOTE: 3, Step.TRANSITION_STATUS: 2, Step.VERIFY: 1}


def note_text(job: WritebackJob) -> str:
    return f"{job.markdown}\n\n— {job.note_marker}"


class WritebackPipeline:
    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        queue: JobQueue,
        scheduler: Scheduler,
        registry: ProviderRegistry,
        drafting: Drafting,
        statuses: StatusCatalog,
        policy: RetryPolicy,
        leases: LeaseKeeper,
        sleep: Sleep,
        monotonic: Monotonic = time.monotonic,
        claims: UnitOfWorkFactory | None = None,
        fences: UnitOfWorkFactory | None = None,
    ) -> None:
        self._uow = uow
        # The claim and the fence are single statements (a read, then one guarded update), each
        # atomic alone, so they run without BEGIN and COMMIT (two round trips fewer). A fence
        # changes nothing a follower sees, so its unit of work publishes nothing.
        self._claims = claims or uow
        self._queue = queue
        self._scheduler = scheduler
        self._registry = registry
        self._drafting = drafting
        self._statuses = statuses
        self._policy = policy
        self._leases = leases
        self._sleep = sleep
        self._monotonic = monotonic
        self._fence = Fence(fences or self._claims, policy, monotonic)
        self._handlers: dict[Step, Callable[[Context], Found]] = {
            Step.DRAFT: self._draft,
            Step.POST_NOTE: self._post_note,
            Step.TRANSITION_STATUS: self._transition_status,
            Step.VERIFY: self._verify,
            Step.FINALIZE: self._finalize,
        }

    def run_step(self, job_id: str, step: Step, message_id: str) -> StepResult:
        with logcontext.bound(job_id=job_id, step=str(step)):
            ctx = self._claim(job_id, step, message_id)
            if ctx is None:
                return StepResult(Action.SKIPPED)
            with self._leases.keep(job_id, message_id) as lease:
                ctx.lease = lease
                try:
                    found: Found | Exception = self._handlers[step](ctx)
                except Exception as exc:  # classified in _record, never lost
                    found = exc
            result = self._record(ctx, found)
        if result.action in (Action.FINISHED, Action.FAILED, Action.HELD):
            try:
                self._scheduler.step_ended(result.tenant)  # its slot is free
            except Wait:  # the sweep admits the next job instead
                log.warning(
                    "job %s: the next job of %s is left to the sweep", job_id, result.tenant
                )
        return result

    def _now(self, ctx: Context) -> datetime:
        """The database's time, from the claim's and the step's own monotonic clock."""
        return ctx.claimed_at + timedelta(seconds=self._monotonic() - ctx.started)

    # The first transaction: load and claim

    def _claim(self, job_id: str, step: Step, message_id: str) -> Context | None:
        with self._claims() as tx:
            loaded = tx.jobs.for_step(job_id)
            if loaded is None or loaded.job.step is not step:
                return None
            job, session, connection, now = loaded
            resuming = job.post_started_at is not None
            try:
                job.claim(message_id, self._policy.step_lease, now)
            except TransitionRefused:
                log.info("job %s: message %s is not the job's own; skipped", job_id, message_id)
                return None
            logcontext.add(session_id=job.session_id, account_id=job.account_id)
            if not tx.jobs.save(job):
                return None
            ctx = Context(job, message_id, session, connection, now, self._monotonic())
            ctx.resuming = resuming
            if session is not None:
                self._load_for_step(tx, ctx, session)
            tx.commit()
        return ctx

    def _load_for_step(self, tx: UnitOfWork, ctx: Context, session: AiSession) -> None:
        job = ctx.job
        if job.step is Step.DRAFT and not job.markdown:
            ctx.prepared = self._drafting.prepare(job.kind, session)
            ctx.cached_draft = tx.drafts.get(ctx.prepared.key)
        if job.step is Step.POST_NOTE and ctx.connection is not None:
            ctx.settings = tx.accounts.settings(job.account_id)
            ctx.status_map = tx.connections.status_map(ctx.connection.id or 0)

    # Steps: I/O only, no transaction open

    def _draft(self, ctx: Context) -> Drafted:
        job = ctx.job
        self._session(ctx)
        if ctx.prepared is None:  # the technician's own markdown, checked when it was posted
            assert job.markdown is not None
            return Drafted(job.markdown, "technician", cached=False)
        if ctx.cached_draft is not None:
            return Drafted(ctx.cached_draft.markdown, ctx.cached_draft.drafter, cached=True)
        # Reuses the preview the technician saw when the session has not changed since.
        draft = self._drafting.fresh(ctx.prepared)
        return Drafted(draft.markdown, draft.drafter, False, (ctx.prepared.key, draft))

    def _post_note(self, ctx: Context) -> NotePosted:
        job = ctx.job
        self._session(ctx)
        ticket_id = job.psa_ticket_id
        assert ticket_id is not None  # a job without a ticket goes from draft to finalize
        if job.external_id is not None:  # posted by an earlier attempt that recorded it
            return NotePosted(
                job.external_id,
                job.target_status_id,
                job.status_transition_skipped_reason,
                found=True,
            )
        provider = self._provider(ctx, posting=True)
        target_id, skipped = job.target_status_id, job.status_transition_skipped_reason
        if target_id is None and skipped is None:
            # Decided before anything is posted: a target that cannot exist on the ticket's
            # board fails the job with no note left behind.
            assert ctx.connection is not None and ctx.connection.id is not None
            connection_id = ctx.connection.id
            target = resolve_target(
                job.kind,
                lambda: provider.get_ticket(ticket_id),
                ctx.status_map,
                ctx.settings,
                lambda board_id: self._statuses.statuses(
                    connection_id, board_id, lambda: provider.list_statuses(board_id)
                ),
            )
            target_id, skipped = target.status_id, target.skipped_reason
        note = provider.find_note(ticket_id, job.note_marker) if ctx.resuming else None
        found = note is not None
        if note is None:
            note = provider.post_note(ticket_id, note_text(job), NOTE_TYPE_BY_KIND[job.kind])
        return NotePosted(note.id, target_id, skipped, found)

    def _transition_status(self, ctx: Context) -> StatusChanged:
        job = ctx.job
        ticket_id, target = job.psa_ticket_id, job.target_status_id
        if ticket_id is None or target is None:  # skipped: the reason is on the job
            return StatusChanged(None, None)
        provider = self._provider(ctx, posting=False)
        ticket = provider.get_ticket(ticket_id)
        if ticket.status_id != target:  # already there after an earlier attempt: no-op
            provider.update_ticket_status(ticket_id, target)
        return StatusChanged(ticket.status_id, target)

    def _verify(self, ctx: Context) -> Verified:
        job = ctx.job
        ticket_id, target = job.psa_ticket_id, job.target_status_id
        assert ticket_id is not None and target is not None  # skipped targets are not verified
        provider = self._provider(ctx, posting=False)
        attempts, failures = self._policy.verify_attempts, []
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(
                multiplier=self._policy.verify_backoff_base, max=self._policy.verify_backoff_max
            ),
            retry=retry_if_exception_type(StatusNotApplied),
            before_sleep=lambda state: failures.append(
                str(state.outcome and state.outcome.exception())
            ),
            sleep=self._sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                number = attempt.retry_state.attempt_number
                if number > 1:  # the change did not stick: apply it again, then re-read
                    provider.update_ticket_status(ticket_id, target)
                ticket = provider.get_ticket(ticket_id)
                if ticket.status_id != target:
                    raise StatusNotApplied(
                        f"Ticket {ticket_id} status did not verify: asked for status {target}, "
                        f"the PSA shows {ticket.status_id} ({ticket.status_name}) "
                        f"after attempt {number} of {attempts}.",
                        number,
                    )
        return Verified(ticket.status_id, ticket.status_name, failures)

    def _finalize(self, ctx: Context) -> Finalized:
        self._session(ctx)
        return Finalized()

    # The second transaction: the job records what was found, and moves on

    def _record(self, ctx: Context, found: Found | Exception) -> StepResult:
        job, owner, step, now = ctx.job, ctx.owner, ctx.job.step, self._now(ctx)
        took = round(self._monotonic() - ctx.started, 3)
        detail: dict[str, Any] = {"started_at": ctx.claimed_at.isoformat(), "seconds": took}
        next_message = None
        try:
            if isinstance(found, Exception):
                event, action = self._after_failure(job, owner, found, now, detail)
            else:
                next_message = self._queue.new_message_id() if step is not Step.FINALIZE else ""
                event, action = self._found(job, owner, found, next_message, now, detail)
        except TransitionRefused:  # our lease was taken over: the new owner decides
            return StepResult(Action.SKIPPED)
        with self._uow() as tx:
            if action is Action.FINISHED:  # the session first: every transaction locks it first
                assert job.markdown is not None
                tx.sessions.close(job.session_id, job.kind, job.markdown, now)
            if not tx.jobs.save(job):  # rolled back, the session's close with it
                log.warning("job %s changed while step %s ran; result dropped", job.id, step)
                return StepResult(Action.SKIPPED)
            if isinstance(found, Drafted) and found.fresh is not None:
                key, draft = found.fresh
                tx.drafts.put(key, job.account_id, draft)
            tx.jobs.add_event(JobEvent(job.id, now, step, event, detail))
            tx.commit()
        log.info("job %s step %s: %s (%s s)", job.id, step, event, took)
        if action is Action.ADVANCE:
            assert next_message
            self._scheduler.send(job, next_message)
        if action is Action.FAILED:
            log.error(
                "job %s failed at %s: %s: %s", job.id, step, job.error_code, job.error_message
            )
            return StepResult(action, f"{job.error_code}: {job.error_message}", job.tenant)
        return StepResult(action, job.error_message or "", job.tenant)

    @staticmethod
    def _found(
        job: WritebackJob,
        owner: str,
        found: Found,
        message_id: str,
        now: datetime,
        detail: dict[str, Any],
    ) -> tuple[str, Action]:
        match found:
            case Drafted():
                job.drafted(owner, found.markdown, message_id, now)
                detail.update(drafter=found.drafter, cached=found.cached)
                return "drafted", Action.ADVANCE
            case NotePosted():
                job.note_posted(
                    owner,
                    found.note_id,
                    found.target_status_id,
                    found.skipped_reason,
                    message_id,
                    now,
                )
                detail.update(note_id=found.note_id, found=found.found)
                return "note_posted", Action.ADVANCE
            case StatusChanged(to_status_id=None):
                job.status_changed(owner, message_id, now)
                return "status_change_skipped", Action.ADVANCE
            case StatusChanged():
                job.status_changed(owner, message_id, now)
                detail.update(from_status_id=found.from_status_id, to_status_id=found.to_status_id)
                return "status_changed", Action.ADVANCE
            case Verified():
                job.verified(owner, found.status_id, found.status_name, message_id, now)
                detail.update(status_id=found.status_id, failed_attempts=found.failed_attempts)
                return "status_verified", Action.ADVANCE
            case Finalized():
                job.finalized(owner, now)
                detail.update(outcome=job.outcome)
                return "succeeded", Action.FINISHED

    def _after_failure(
        self,
        job: WritebackJob,
        owner: str,
        exc: Exception,
        now: datetime,
        detail: dict[str, Any],
    ) -> tuple[str, Action]:
        if isinstance(exc, Wait):  # no attempt, no settle, no thread held
            job.wait(owner, exc.wait, now)
            detail.update(wait=round(exc.wait, 3), reason=exc.code, message=exc.message)
            return ("budget_wait" if exc.code == "budget_wait" else "wait"), Action.HELD
        failure = _classified(exc, job)
        detail.update(code=failure.code, message=failure.message)
        delay = job.step_failed(owner, failure, self._policy, now)
        if delay is None:
            return "failed", Action.FAILED
        detail["delay"] = round(delay, 3)
        log.warning("job %s step %s: %s; retry in %.1f s", job.id, job.step, failure.message, delay)
        return "retry_scheduled", Action.HELD

    # Loading helpers

    @staticmethod
    def _session(ctx: Context) -> AiSession:
        if ctx.session is None:
            raise SessionGone(f"Session {ctx.job.session_id} of job {ctx.job.id} is gone.")
        return ctx.session

    def _provider(self, ctx: Context, *, posting: bool) -> PsaProvider:
        if ctx.connection is None or not ctx.connection.is_active:
            raise ConnectionGone(f"The PSA connection of job {ctx.job.id} is not active any more.")
        guard = self._fence.guard(
            ctx.job, ctx.owner, ctx.lease, lambda: self._now(ctx), posting=posting
        )
        requests = STEP_REQUESTS.get(ctx.job.step, 1)
        return self._registry.build(ctx.connection, requests, before_write=guard)


def _classified(exc: Exception, job: WritebackJob) -> StepFailure:
    if isinstance(exc, DomainError):
        return StepFailure(
            exc.code, exc.message, exc.failure, exc.attempts, getattr(exc, "retry_after", None)
        )
    # A bug or an outage we cannot classify: bounded retries, its first line kept.
    log.exception("step %s of job %s raised", job.step, job.id)
    return StepFailure("internal_error", _describe(exc), Failure.TRANSIENT)


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
