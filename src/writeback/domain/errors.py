"""Domain errors. Each carries one message string (details live in the job row) and maps to one
problem+json answer at the API edge, or to the error code and message of a job. None reaches
Celery: the pipeline records them on the job, and the task shell raises its own StepFailed."""

from __future__ import annotations

import enum


class Failure(enum.StrEnum):
    """How a failed step goes on, decided once where the failure is understood."""

    TRANSIENT = "transient"  # nothing was applied: retry with backoff, honouring Retry-After
    AMBIGUOUS = "ambiguous"  # a write may have been applied: settle, then look before writing
    PERMANENT = "permanent"  # repeating it unchanged fails again: the job fails at once


class DomainError(Exception):
    code = "error"
    failure = Failure.PERMANENT
    attempts = 1  # how many attempts at the PSA or the model this failure stands for

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    code = "not_found"


class Unauthorized(DomainError):
    code = "unauthorized"


class InvalidInput(DomainError):
    """Input that passed the schema but breaks a rule; names the field at fault."""

    code = "invalid_input"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Conflict(DomainError):
    """`job_id`: the job the caller should look at (or retry) instead."""

    code = "conflict"

    def __init__(self, message: str, code: str | None = None, job_id: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.job_id = job_id


class AlreadyClosed(Conflict):
    """The session is already resolved (for a resolve) or escalated (for an escalate)."""


class JobInFlight(Conflict):
    code = "job_in_flight"

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"A writeback job for this session is still in flight ({job_id}).",
            "job_in_flight",
            job_id,
        )


class DraftRejected(DomainError):
    """A draft that must not be posted: refused by the model, cut short, or failing validation."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class LlmUnavailable(DomainError):
    """The model did not answer within its retry budget (429, 529, 5xx, timeouts)."""

    code = "llm_unavailable"
    failure = Failure.TRANSIENT

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# PSA errors: raised by providers, turned into job outcomes by the pipeline.


class PsaError(DomainError):
    """`failed` names what a connection check should blame: "site_url" (host unreachable or not
    a PSA), "codebase", "credentials" or "client_id"."""

    code = "psa_error"

    def __init__(self, message: str, *, failed: str | None = None) -> None:
        super().__init__(message)
        self.failed = failed


class PsaTransientError(PsaError):
    """Worth retrying: connection failure, timeout, 5xx, 429. `retry_after` in seconds if given."""

    code = "psa_unavailable"
    failure = Failure.TRANSIENT

    def __init__(
        self, message: str, retry_after: float | None = None, *, failed: str | None = None
    ) -> None:
        super().__init__(message, failed=failed)
        self.retry_after = retry_after


class PsaAmbiguousError(PsaTransientError):
    """A write was sent and its answer lost (timeout, reset, 5xx after sending): the PSA may
    have applied it. The pipeline waits the settle time and looks before writing again."""

    failure = Failure.AMBIGUOUS


class SiteUrlRefused(PsaError):
    """The connection's site URL fails the SSRF guard at connect time (DNS changed, policy
    tightened): no request was sent."""

    code = "site_url_refused"


class CredentialsUnreadable(PsaError):
    """No configured key opens the connection's sealed credentials (a key was dropped)."""

    code = "credentials_unreadable"


class ConnectionGone(PsaError):
    """The session's PSA connection was deleted or deactivated."""

    code = "connection_gone"


class PsaAuthError(PsaError):
    code = "psa_auth_failed"


class PsaNotFound(PsaError):
    code = "psa_not_found"


class PsaRejected(PsaError):
    """The PSA refused the request as invalid: repeating it unchanged would fail again."""

    code = "psa_rejected"


class StatusTargetError(DomainError):
    """The configured target status does not exist (or is inactive) on the ticket's board."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class StatusNotApplied(PsaError):
    """The PSA answered the status change but a fresh read shows another status."""

    code = "status_verification_failed"

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class SessionGone(DomainError):
    """The job's session no longer exists."""

    code = "session_gone"


class Wait(DomainError):
    """Not a failure and not an attempt: nothing was sent, and the job is held for `wait`
    seconds, then runs the step again."""

    code = "wait"
    failure = Failure.TRANSIENT  # should anything take it for a failure: a passing one

    def __init__(self, message: str, wait: float) -> None:
        super().__init__(message)
        self.wait = wait


class BudgetWait(Wait):
    """The tenant's request budget has no token now: the job waits until a request fits."""

    code = "budget_wait"


class ConcurrencyWait(BudgetWait):
    """The PSA's limit of requests in flight at once (Autotask: 3 per endpoint) is reached and
    no slot came free within a short wait: held like a spent budget; nothing was sent."""


class PartUnavailable(Wait):
    """One of our own parts (PostgreSQL, Redis) did not answer: the job waits for it, and no
    PSA attempt is counted against it."""

    code = "part_unavailable"

    def __init__(self, message: str, wait: float = 5.0) -> None:
        super().__init__(message, wait)


class StoreUnavailable(PartUnavailable):
    """The database did not answer (the adapter's word for a lost or refused connection)."""

    code = "store_unavailable"


class LeaseLost(Wait):
    """A step's write could not be fenced: its lease was taken over, or a pause ate the
    margin the lease leaves for the write. Nothing was sent; if the job is still ours, the
    step runs again at once."""

    code = "lease_lost"

    def __init__(self, message: str) -> None:
        super().__init__(message, 0.0)


class ConfigurationRefused(ValueError):
    """Settings under which the service could break its promises; start-up stops."""
