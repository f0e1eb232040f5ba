"""The writeback pipeline: one handler per step, each safe to run twice.

A step runs in two transactions around its I/O. The first loads the job with what the step
needs (one joined read) and claims it (the pick-up acknowledges the job's one outstanding
message). The step then
talks to the PSA or the model with no transaction open, its lease renewed by a heartbeat. The
second records the result, moves the job on (`WritebackJob` decides how) and writes the step's
one audit row. The next step's message is sent only after that commit.

Every failure is classified once, where it is understood (`DomainError.failure`): transient
failures are retried with backoff, ambiguous ones (a write whose answer was lost) wait the
settle time and look before writing again, permanent ones fail the job at once. A spent request
budget is no failure at all: the job is held until a request fits.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from writeback.domain import logcontext
from writeback.domain.drafting import Drafting, Prepared
from writeback.domain.errors import (
    BudgetWait,
    ConnectionGone,
    DomainError,
    Failure,
    SessionGone,
    StatusNotApplied,
)
from writeback.domain.lease import LeaseKeeper
from writeback.domain.model import (
    NOTE_TYPE_BY_KIND,
    SESSION_STATUS_BY_KIND,
    AccountSettings,
    AiSession,
    Draft,
    JobEvent,
    JobKind,
    PsaConnection,
    StatusMapping,
    Step,
    TransitionRefused,
    WritebackJob,
)
from writeback.domain.ports import (
    Clock,
    JobQueue,
    Monotonic,
    ProviderRegistry,
    PsaProvider,
    Sleep,
    UnitOfWork,
    UnitOfWorkFactory,
)
from writeback.domain.retry import RetryPolicy
from writeback.domain.scheduler import send
from writeback.domain.status_targets import StatusCatalog, resolve_target

log = logging.getLogger(__name__)


class Action(enum.StrEnum):
    ADVANCE = "advance"  # step done; the next one is in the broker
    HELD = "held"  # waiting in the database (a retry's backoff or the request budget)
    FAILED = "failed"  # the job ended failed; `message` says why
    SKIPPED = "skipped"  # not ours to run: a stale or duplicate message
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
    session: AiSession | None  # None: deleted meanwhile (the step fails session_gone)
    connection: PsaConnection | None
    settings: AccountSettings | None = None
    status_map: list[StatusMapping] = field(default_factory=list)
    prepared: Prepared | None = None
    cached_draft: Draft | None = None
    resuming: bool = False  # post_note: an earlier attempt may have stored the note


@dataclass
class Done:
    """A step's result: what to record on the job, where it goes next, what to audit."""

    next_step: Step
    event: str
    detail: dict[str, Any] = field(default_factory=dict)
    record: Callable[[WritebackJob], None] = lambda job: None
    also: Callable[[UnitOfWork], None] = lambda tx: None


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
        registry: ProviderRegistry,
        drafting: Drafting,
        statuses: StatusCatalog,
        policy: RetryPolicy,
        leases: LeaseKeeper,
        clock: Clock,
        sleep: Sleep,
        monotonic: Monotonic = time.monotonic,
        claims: UnitOfWorkFactory | None = None,
    ) -> None:
        self._uow = uow
        # The claim is a read, then one update guarded by the version read: each statement is
        # atomic alone, so it may run without BEGIN and COMMIT (two round trips fewer).
        self._claims = claims or uow
        self._queue = queue
        self._registry = registry
        self._drafting = drafting
        self._statuses = statuses
        self._policy = policy
        self._leases = leases
        self._clock = clock
        self._sleep = sleep
        self._monotonic = monotonic
        self._handlers: dict[Step, Callable[[Context], Done]] = {
            Step.DRAFT: self._draft,
            Step.POST_NOTE: self._post_note,
            Step.TRANSITION_STATUS: self._transition_status,
            Step.VERIFY: self._verify,
            Step.FINALIZE: self._finalize,
        }

    def run_step(self, job_id: str, step: Step, message_id: str) -> StepResult:
        with logcontext.bound(job_id=job_id, step=str(step)):
            started = self._clock()
            ctx = self._claim(job_id, step, message_id, started)
            if ctx is None:
                return StepResult(Action.SKIPPED)
            with self._leases.keep(job_id, message_id):
                timer = self._monotonic()
                try:
                    done: Done | Exception = self._handlers[step](ctx)
                except Exception as exc:  # classified in _record, never lost
                    done = exc
                took = round(self._monotonic() - timer, 3)
            return self._record(ctx.job, message_id, done, started, took)

    # The first transaction: load and claim

    def _claim(self, job_id: str, step: Step, message_id: str, now: datetime) -> Context | None:
        with self._claims() as tx:
            loaded = tx.jobs.for_step(job_id)
            if loaded is None or loaded.job.step is not step:
                return None
            job, session, connection = loaded
            resuming = job.post_started_at is not None
            try:
                job.claim(message_id, self._policy.step_lease, now)
            except TransitionRefused:
                log.info("job %s: message %s is not the job's own; skipped", job_id, message_id)
                return None
            logcontext.add(session_id=job.session_id, account_id=job.account_id)
            if not tx.jobs.save(job):
                return None
            ctx = Context(job=job, session=session, connection=connection, resuming=resuming)
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

    def _draft(self, ctx: Context) -> Done:
        next_step = Step.POST_NOTE if self._session(ctx).has_ticket else Step.FINALIZE
        if ctx.prepared is None:  # the technician's own markdown, checked when it was posted
            return Done(next_step, "drafted", {"drafter": "technician"})
        draft, cached = ctx.cached_draft, True
        if draft is None:
            # Reuses the preview the technician saw when the session has not changed since.
            draft, cached = self._drafting.fresh(ctx.prepared), False
        prepared, markdown = ctx.prepared, draft.markdown

        def record(job: WritebackJob) -> None:
            job.markdown = markdown

        def store(tx: UnitOfWork) -> None:
            if not cached:
                tx.drafts.put(prepared.key, ctx.job.account_id, draft)

        return Done(
            next_step,
            "drafted",
            {"drafter": draft.drafter, "cached": cached},
            record=record,
            also=store,
        )

    def _post_note(self, ctx: Context) -> Done:
        job, session = ctx.job, self._session(ctx)
        ticket_id = session.psa_ticket_id
        if ticket_id is None or job.external_id is not None:
            return Done(Step.TRANSITION_STATUS, "note_posted", {"note_id": job.external_id})
        provider = self._provider(ctx)
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
        note_id = note.id

        def record(job: WritebackJob) -> None:
            job.external_id = note_id
            job.target_status_id, job.status_transition_skipped_reason = target_id, skipped

        return Done(
            Step.TRANSITION_STATUS, "note_posted", {"note_id": note_id, "found": found}, record
        )

    def _transition_status(self, ctx: Context) -> Done:
        ticket_id, target = self._session(ctx).psa_ticket_id, ctx.job.target_status_id
        if ticket_id is None or target is None:  # skipped: the reason is on the job
            return Done(Step.FINALIZE, "status_change_skipped")
        provider = self._provider(ctx)
        ticket = provider.get_ticket(ticket_id)
        if ticket.status_id != target:  # already there after an earlier attempt: no-op
            provider.update_ticket_status(ticket_id, target)
        return Done(
            Step.VERIFY,
            "status_changed",
            {"from_status_id": ticket.status_id, "to_status_id": target},
        )

    def _verify(self, ctx: Context) -> Done:
        ticket_id, target = self._session(ctx).psa_ticket_id, ctx.job.target_status_id
        if ticket_id is None or target is None:
            return Done(Step.FINALIZE, "status_verified")
        provider = self._provider(ctx)
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
        status_id, status_name = ticket.status_id, ticket.status_name

        def record(job: WritebackJob) -> None:
            job.verified_status_id, job.verified_status_name = status_id, status_name

        detail = {"status_id": status_id, "failed_attempts": failures}
        return Done(Step.FINALIZE, "status_verified", detail, record)

    def _finalize(self, ctx: Context) -> Done:
        job, session = ctx.job, self._session(ctx)
        assert job.markdown is not None  # set by the draft step
        markdown, kind = job.markdown, job.kind

        def close(tx: UnitOfWork) -> None:
            tx.sessions.close(job.session_id, kind, markdown, self._clock())

        return Done(Step.DONE, "succeeded", {"outcome": outcome_of(kind, session)}, also=close)

    # The second transaction: record, move on, audit

    def _record(
        self,
        job: WritebackJob,
        message_id: str,
        done: Done | Exception,
        started: datetime,
        took: float,
    ) -> StepResult:
        step, now = job.step, self._clock()
        detail: dict[str, Any] = {"started_at": started.isoformat(), "seconds": took}
        next_message: str | None = None
        try:
            if isinstance(done, Done):
                event, result = done.event, Action.ADVANCE
                done.record(job)
                detail.update(done.detail)
                if done.next_step is Step.DONE:
                    job.succeed(message_id, done.detail["outcome"], now)
                    result = Action.FINISHED
                else:
                    next_message = self._queue.new_message_id()
                    job.advance(message_id, done.next_step, next_message, now)
            else:
                event, result = self._after_failure(job, message_id, done, now, detail)
        except TransitionRefused:  # our lease was taken over: the new owner decides
            return StepResult(Action.SKIPPED)
        with self._uow() as tx:
            if not tx.jobs.save(job):
                log.warning("job %s changed while step %s ran; result dropped", job.id, step)
                return StepResult(Action.SKIPPED)
            if isinstance(done, Done):
                done.also(tx)
            tx.jobs.add_event(JobEvent(job.id, now, step, event, detail))
            tx.commit()
        log.info("job %s step %s: %s (%s s)", job.id, step, event, took)
        if next_message is not None:
            send(job, next_message, uow=self._uow, queue=self._queue, clock=self._clock)
        if result is Action.FAILED:
            log.error(
                "job %s failed at %s: %s: %s", job.id, step, job.error_code, job.error_message
            )
            return StepResult(result, f"{job.error_code}: {job.error_message}", job.tenant)
        return StepResult(result, job.error_message or "", job.tenant)

    def _after_failure(
        self,
        job: WritebackJob,
        message_id: str,
        exc: Exception,
        now: datetime,
        detail: dict[str, Any],
    ) -> tuple[str, Action]:
        if isinstance(exc, BudgetWait):  # no attempt, no settle, no thread held
            job.schedule(message_id, exc.wait, now, error=None)
            detail["wait"] = round(exc.wait, 3)
            return "budget_wait", Action.HELD
        attempts = 1
        if isinstance(exc, DomainError):
            failure, code, message, attempts = exc.failure, exc.code, exc.message, exc.attempts
        else:  # a bug or an outage we cannot classify: bounded retries, the message kept
            log.exception("step %s of job %s raised", job.step, job.id)
            failure, code, message = Failure.TRANSIENT, "internal_error", _describe(exc)
        detail.update(code=code, message=message)
        if failure is Failure.PERMANENT or job.attempts + 1 >= self._policy.max_attempts:
            if failure is not Failure.PERMANENT:
                message = f"{message} (gave up after {job.attempts + 1} attempts)"
            job.attempts += attempts
            job.fail(message_id, code, message, now)
            return "failed", Action.FAILED
        delay = self._policy.backoff(job.attempts + 1, getattr(exc, "retry_after", None))
        if failure is Failure.AMBIGUOUS:  # let a possibly stored note land before we look
            delay = max(delay, self._policy.post_settle)
        job.schedule(message_id, delay, now, error=(code, message))
        detail["delay"] = round(delay, 3)
        log.warning("job %s step %s: %s; retry in %.1f s", job.id, job.step, message, delay)
        return "retry_scheduled", Action.HELD

    # Loading helpers

    @staticmethod
    def _session(ctx: Context) -> AiSession:
        if ctx.session is None:
            raise SessionGone(f"Session {ctx.job.session_id} of job {ctx.job.id} is gone.")
        return ctx.session

    def _provider(self, ctx: Context) -> PsaProvider:
        if ctx.connection is None or not ctx.connection.is_active:
            raise ConnectionGone(
                f"Session {ctx.job.session_id} has no active PSA connection any more."
            )
        return self._registry.build(ctx.connection, STEP_REQUESTS.get(ctx.job.step, 1))


def outcome_of(kind: JobKind, session: AiSession) -> str:
    closed_as = str(SESSION_STATUS_BY_KIND[kind])
    return closed_as if session.has_ticket else f"{closed_as}_local"


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
