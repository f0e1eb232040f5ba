"""The writeback pipeline: one method per step, each safe to run twice.

A step claims the job with a conditional update (the database decides races), does its work,
and records the result in its own transaction before the next step is released. Transient PSA
failures become retries bounded by the RetryPolicy; permanent ones fail the job with a code.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from writeback.domain import logcontext
from writeback.domain.drafting import Drafting
from writeback.domain.errors import (
    DraftRejected,
    LlmUnavailable,
    NotFound,
    PsaError,
    PsaTransientError,
    StatusNotApplied,
    StatusTargetError,
)
from writeback.domain.model import (
    NOTE_TYPE_BY_KIND,
    AiSession,
    JobEvent,
    JobKind,
    JobState,
    PsaConnection,
    Step,
    WritebackJob,
)
from writeback.domain.ports import (
    Clock,
    JobFeed,
    ProviderRegistry,
    PsaProvider,
    Sleep,
    UnitOfWork,
    UnitOfWorkFactory,
)
from writeback.domain.retry import RetryPolicy
from writeback.domain.status_targets import StatusCatalog, Target, resolve_target

log = logging.getLogger(__name__)


class Action(enum.StrEnum):
    ADVANCE = "advance"  # step done; the next one may run
    RETRY = "retry"  # run this step again after `countdown` seconds
    PARKED = "parked"  # wait too long for the broker: the sweeper re-enqueues when due
    FAILED = "failed"  # the job ended failed; `message` says why
    SKIPPED = "skipped"  # not ours to run (done already, or owned by another delivery)
    FINISHED = "finished"  # the job succeeded


@dataclass(frozen=True)
class StepResult:
    action: Action
    countdown: float = 0.0
    message: str = ""


@dataclass
class _Context:
    """What a PSA step needs, loaded in one transaction."""

    job: WritebackJob
    session: AiSession
    connection: PsaConnection | None


def note_text(job: WritebackJob) -> str:
    return f"{job.markdown}\n\n— {job.note_marker}"


class WritebackPipeline:
    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        registry: ProviderRegistry,
        drafting: Drafting,
        statuses: StatusCatalog,
        policy: RetryPolicy,
        clock: Clock,
        sleep: Sleep,
        feed: JobFeed | None = None,
    ) -> None:
        self._uow = uow
        self._registry = registry
        self._drafting = drafting
        self._statuses = statuses
        self._policy = policy
        self._clock = clock
        self._sleep = sleep
        self._feed = feed
        self._handlers: dict[Step, Callable[[str], StepResult]] = {
            Step.DRAFT: self._draft,
            Step.POST_NOTE: self._post_note,
            Step.TRANSITION_STATUS: self._transition_status,
            Step.VERIFY: self._verify,
            Step.FINALIZE: self._finalize,
        }

    def run_step(self, job_id: str, step: Step, delivery_id: str) -> StepResult:
        with logcontext.bound(job_id=job_id, step=str(step)):
            return self._run_step(job_id, step, delivery_id)

    def _run_step(self, job_id: str, step: Step, delivery_id: str) -> StepResult:
        now = self._clock()
        with self._uow() as tx:
            lease_until = now + timedelta(seconds=self._policy.step_lease)
            if not tx.jobs.claim(job_id, step, delivery_id, now, lease_until):
                return StepResult(Action.SKIPPED)
            self._event(tx, job_id, step, "step_started", delivery_id=delivery_id)
            tx.commit()
            self._publish(self._job(tx, job_id))
        try:
            return self._handlers[step](job_id)
        except (PsaTransientError, LlmUnavailable) as exc:
            wait = exc.retry_after
            if step is Step.POST_NOTE:  # let a possibly stored note land before we look for it
                wait = max(wait or 0.0, self._policy.post_settle)
            return self._retry_later(job_id, step, exc.code, exc.message, wait)
        except (PsaError, DraftRejected, StatusTargetError) as exc:
            return self._fail(job_id, step, exc.code, exc.message)
        except Exception as exc:  # a bug or an outage we cannot classify: bounded retries
            log.exception("step %s of job %s raised", step, job_id)
            return self._retry_later(
                job_id, step, "internal_error", f"{type(exc).__name__} in {step}"
            )

    # Steps

    def _draft(self, job_id: str) -> StepResult:
        with self._uow() as tx:
            ctx = self._load(tx, job_id)
            if not ctx.job.markdown:
                # Reuses the preview the technician saw when the session has not changed since.
                draft, cached = self._drafting.draft(tx, JobKind(ctx.job.kind), ctx.session)
                ctx.job.markdown = draft.markdown
                self._event(tx, job_id, Step.DRAFT, "drafted", drafter=draft.drafter, cached=cached)
            next_step = Step.POST_NOTE if ctx.session.has_ticket else Step.FINALIZE
            return self._advance(tx, ctx.job, Step.DRAFT, next_step)

    def _post_note(self, job_id: str) -> StepResult:
        with self._uow() as tx:
            ctx = self._load(tx, job_id)
            job, ticket_id = ctx.job, ctx.session.psa_ticket_id
            if ticket_id is None or job.external_id is not None:
                return self._advance(tx, job, Step.POST_NOTE, Step.TRANSITION_STATUS)
            provider = self._provider(ctx)
            if job.target_status_id is None and job.status_transition_skipped_reason is None:
                # Decided before anything is posted: a target that cannot exist on the
                # ticket's board fails the job with no note left behind.
                target = self._target(tx, ctx, provider, ticket_id)
                job.target_status_id = target.status_id
                job.status_transition_skipped_reason = target.skipped_reason
            resuming = job.post_started_at is not None
            if not resuming:
                # Record the intent first: if we die after the PSA stored the note, the next
                # attempt knows to look for it instead of posting again.
                job.post_started_at = self._clock()
            tx.commit()
            self._publish(job)  # the skipped reason may have changed
            marker, text = job.note_marker, note_text(job)
            note_type = NOTE_TYPE_BY_KIND[JobKind(job.kind)]
        note = provider.find_note(ticket_id, marker) if resuming else None
        if note is None:
            note = provider.post_note(ticket_id, text, note_type)
        with self._uow() as tx:
            job = self._job(tx, job_id)
            job.external_id = note.id
            self._event(tx, job_id, Step.POST_NOTE, "note_posted", note_id=note.id, found=resuming)
            return self._advance(tx, job, Step.POST_NOTE, Step.TRANSITION_STATUS)

    def _target(
        self, tx: UnitOfWork, ctx: _Context, provider: PsaProvider, ticket_id: str
    ) -> Target:
        assert ctx.connection is not None and ctx.connection.id is not None
        connection_id = ctx.connection.id
        return resolve_target(
            JobKind(ctx.job.kind),
            lambda: provider.get_ticket(ticket_id),
            tx.connections.status_map(connection_id),
            tx.accounts.settings(ctx.job.account_id),
            lambda board_id: self._statuses.statuses(
                connection_id, board_id, lambda: provider.list_statuses(board_id)
            ),
        )

    def _transition_status(self, job_id: str) -> StepResult:
        with self._uow() as tx:
            ctx = self._load(tx, job_id)
            job, ticket_id, target = ctx.job, ctx.session.psa_ticket_id, ctx.job.target_status_id
            if ticket_id is None or target is None:  # skipped: the reason is on the job
                return self._advance(tx, job, Step.TRANSITION_STATUS, Step.FINALIZE)
            provider = self._provider(ctx)
        ticket = provider.get_ticket(ticket_id)
        if ticket.status_id != target:  # already there after an earlier attempt: no-op
            provider.update_ticket_status(ticket_id, target)
        with self._uow() as tx:
            job = self._job(tx, job_id)
            self._event(
                tx,
                job_id,
                Step.TRANSITION_STATUS,
                "status_changed",
                from_status_id=ticket.status_id,
                to_status_id=target,
            )
            return self._advance(tx, job, Step.TRANSITION_STATUS, Step.VERIFY)

    def _verify(self, job_id: str) -> StepResult:
        with self._uow() as tx:
            ctx = self._load(tx, job_id)
            ticket_id, target = ctx.session.psa_ticket_id, ctx.job.target_status_id
            if ticket_id is None or target is None:
                return self._advance(tx, ctx.job, Step.VERIFY, Step.FINALIZE)
            provider = self._provider(ctx)
        attempts = self._policy.verify_attempts
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(
                multiplier=self._policy.verify_backoff_base, max=self._policy.verify_backoff_max
            ),
            retry=retry_if_exception_type(StatusNotApplied),
            before_sleep=lambda state: self._record_failed_verification(job_id, state),
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
                        f"after attempt {number} of {attempts}."
                    )
        with self._uow() as tx:
            job = self._job(tx, job_id)
            job.verified_status_id, job.verified_status_name = ticket.status_id, ticket.status_name
            self._event(tx, job_id, Step.VERIFY, "status_verified", status_id=ticket.status_id)
            return self._advance(tx, job, Step.VERIFY, Step.FINALIZE)

    def _finalize(self, job_id: str) -> StepResult:
        with self._uow() as tx:
            ctx = self._load(tx, job_id)
            job, now = ctx.job, self._clock()
            kind = JobKind(job.kind)
            assert job.markdown is not None  # set by the draft step
            ctx.session.close(kind, job.markdown, now)
            closed_as = "resolved" if kind is JobKind.RESOLVE else "escalated"
            job.outcome = closed_as if ctx.session.has_ticket else f"{closed_as}_local"
            job.state, job.step, job.finished_at, job.due_at = (
                JobState.SUCCEEDED,
                Step.DONE,
                now,
                None,
            )
            job.error_code = job.error_message = job.delivery_id = None
            job.updated_at = now
            self._event(tx, job_id, Step.FINALIZE, "succeeded", outcome=job.outcome)
            tx.commit()
            self._publish(job)
        log.info("job %s succeeded: %s", job_id, job.outcome)
        return StepResult(Action.FINISHED)

    # Bookkeeping

    def _advance(
        self, tx: UnitOfWork, job: WritebackJob, done: Step, next_step: Step
    ) -> StepResult:
        now = self._clock()
        job.step, job.state, job.attempts = next_step, JobState.QUEUED, 0
        job.error_code = job.error_message = job.delivery_id = None
        job.updated_at, job.due_at = now, now + timedelta(seconds=self._policy.enqueue_grace)
        self._event(tx, job.id, done, "step_done", next_step=str(next_step))
        tx.commit()
        self._publish(job)
        return StepResult(Action.ADVANCE)

    def _retry_later(
        self, job_id: str, step: Step, code: str, message: str, retry_after: float | None = None
    ) -> StepResult:
        with self._uow() as tx:
            job = self._job(tx, job_id)
            if job.attempts >= self._policy.max_attempts:
                tx.rollback()
                return self._fail(
                    job_id, step, code, f"{message} (gave up after {job.attempts} attempts)"
                )
            delay = self._policy.backoff(job.attempts, retry_after)
            parked = delay > self._policy.max_countdown
            now = self._clock()
            job.state, job.error_code, job.error_message = JobState.RETRYING, code, message
            job.delivery_id, job.updated_at = None, now
            grace = 0.0 if parked else self._policy.enqueue_grace
            job.due_at = now + timedelta(seconds=delay + grace)
            self._event(
                tx,
                job_id,
                step,
                "retry_scheduled",
                code=code,
                message=message,
                delay=round(delay, 3),
                parked=parked,
            )
            tx.commit()
            self._publish(job)
        log.warning("job %s step %s: %s; retry in %.1f s", job_id, step, message, delay)
        if parked:
            return StepResult(Action.PARKED, countdown=delay, message=message)
        return StepResult(Action.RETRY, countdown=delay, message=message)

    def _fail(self, job_id: str, step: Step, code: str, message: str) -> StepResult:
        with self._uow() as tx:
            job = self._job(tx, job_id)
            now = self._clock()
            job.state, job.error_code, job.error_message = JobState.FAILED, code, message
            job.finished_at, job.updated_at, job.due_at, job.delivery_id = now, now, None, None
            self._event(tx, job_id, step, "failed", code=code, message=message)
            tx.commit()
            self._publish(job)
        log.error("job %s failed at %s: %s: %s", job_id, step, code, message)
        return StepResult(Action.FAILED, message=f"{code}: {message}")

    def _record_failed_verification(self, job_id: str, state: RetryCallState) -> None:
        wait = state.next_action.sleep if state.next_action else 0.0
        message = str(state.outcome.exception()) if state.outcome else "status did not verify"
        with self._uow() as tx:
            job = self._job(tx, job_id)
            now = self._clock()
            job.state, job.attempts = JobState.RETRYING, job.attempts + 1
            job.error_code, job.error_message = StatusNotApplied.code, message
            # Keep the lease (delivery_id stays ours) across the wait.
            job.updated_at = now
            job.due_at = now + timedelta(seconds=wait + self._policy.step_lease)
            self._event(
                tx,
                job_id,
                Step.VERIFY,
                "verification_failed",
                message=message,
                retry_in=round(wait, 3),
            )
            tx.commit()
            self._publish(job)

    def _publish(self, job: WritebackJob) -> None:
        """After a committed transition: pollers and event streams learn of it now."""
        if self._feed is not None:
            self._feed.publish(job, ())

    def _event(self, tx: UnitOfWork, job_id: str, step: Step, event: str, **detail: Any) -> None:
        tx.jobs.add_event(
            JobEvent(job_id=job_id, at=self._clock(), step=step, event=event, detail=detail)
        )

    def _job(self, tx: UnitOfWork, job_id: str) -> WritebackJob:
        job = tx.jobs.get(job_id)
        if job is None:
            raise NotFound(f"Job {job_id} not found.")
        return job

    def _load(self, tx: UnitOfWork, job_id: str) -> _Context:
        job = self._job(tx, job_id)
        logcontext.add(session_id=job.session_id, account_id=job.account_id)
        session = tx.sessions.get(job.session_id)
        if session is None:
            raise NotFound(f"Session {job.session_id} of job {job_id} not found.")
        connection = (
            tx.connections.get(session.psa_connection_id) if session.psa_connection_id else None
        )
        return _Context(job=job, session=session, connection=connection)

    def _provider(self, ctx: _Context) -> PsaProvider:
        if ctx.connection is None or not ctx.connection.is_active:
            raise PsaError(f"Session {ctx.session.id} has no active PSA connection.")
        return self._registry.build(ctx.connection)
