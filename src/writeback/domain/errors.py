"""Domain errors. Each carries one message string (details live in the job row), so it keeps its
type through Celery's serializer and maps to one problem+json answer at the API edge."""

from __future__ import annotations


class DomainError(Exception):
    code = "error"

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
    code = "conflict"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class AlreadyClosed(Conflict):
    """The session is already resolved (for a resolve) or escalated (for an escalate)."""


class JobInFlight(Conflict):
    code = "job_in_flight"

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"A writeback job for this session is still in flight ({job_id}).", "job_in_flight"
        )
        self.job_id = job_id


class DraftRejected(DomainError):
    """A draft that must not be posted: refused by the model, cut short, or failing validation."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class LlmUnavailable(DomainError):
    """The model did not answer within its retry budget (429, 529, 5xx, timeouts)."""

    code = "llm_unavailable"

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

    def __init__(
        self, message: str, retry_after: float | None = None, *, failed: str | None = None
    ) -> None:
        super().__init__(message, failed=failed)
        self.retry_after = retry_after


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
