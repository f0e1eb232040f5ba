"""How long the pipeline waits before trying again, for how long it keeps trying, and the
timings of leases, admission and recovery. Times in seconds."""

from __future__ import annotations

import random
from dataclasses import dataclass

from writeback.domain.errors import ConfigurationRefused


@dataclass(frozen=True)
class RetryPolicy:
    # Failed attempts of one step (PSA, network or model answers) before the job fails.
    max_attempts: int = 8
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    # Status verification retries happen inside the verify step with tenacity, so they stay short.
    verify_attempts: int = 4
    verify_backoff_base: float = 1.0
    verify_backoff_max: float = 8.0
    # How long a PSA may still be storing a write it received: after a write whose answer was
    # lost (ambiguous), or a takeover of a step whose write may be in flight, look for it no
    # sooner than this after the write could have been sent.
    post_settle: float = 45.0
    # A running step renews its lease every `step_lease / 3`; a lease that runs out means the
    # worker is gone, and the sweeper hands the step to another worker.
    step_lease: float = 30.0
    # How many of a tenant's jobs may be in the broker or running at once; the rest wait in the
    # database, so one tenant's backlog never queues ahead of another tenant's job.
    tenant_slots: int = 4
    # A message not picked up this long after it was sent is sent again (a safety net for a
    # message that a dying worker had reserved but not started).
    pickup_timeout: float = 600.0
    # Recoveries of a lost delivery before the job fails with delivery_lost.
    max_redeliveries: int = 5
    # A PSA request's timeout, and how long a step may take between confirming it still owns
    # its job and sending a write: the confirmation holds the lease for both and a margin, so
    # no takeover can happen before the write is sent or given up.
    write_timeout: float = 30.0
    write_margin: float = 5.0
    # A message committed but not known to be sent this long (the sender died between its
    # commit and its send) is sent again.
    send_grace: float = 5.0

    @property
    def heartbeat(self) -> float:
        return self.step_lease / 3

    @property
    def look_after_lease(self) -> float:
        """After a step's lease ran out, how long until a note its last fenced POST may have
        sent is surely stored: that POST went out within `write_margin` of the fence, which
        left the lease `write_hold` from then, and is stored within `post_settle` of leaving."""
        return max(0.0, self.post_settle - self.write_timeout - self.write_margin)

    @property
    def write_hold(self) -> float:
        """What a fenced write's confirmation leaves on the lease: the margin the step may
        spend before the send, the send's own timeout, and the margin again for clocks."""
        return self.write_timeout + 2 * self.write_margin

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Delay before attempt `attempt + 1`: exponential with equal jitter (uniform between
        half the ceiling and the ceiling, so a retry never comes almost at once); a PSA's
        Retry-After, when given, is honoured exactly."""
        if retry_after is not None:
            return retry_after
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** max(attempt - 1, 0))
        return random.uniform(ceiling / 2, ceiling)

    def check(self, *, sweep_interval: float) -> None:
        """Refuse timings under which a live step could be taken over."""
        if self.max_attempts < 1 or self.verify_attempts < 1 or self.tenant_slots < 1:
            raise ConfigurationRefused("retry attempt counts and tenant slots must be at least 1")
        if self.heartbeat < 1:
            raise ConfigurationRefused("WRITEBACK_STEP_LEASE must be at least 3 s")
        if sweep_interval >= self.step_lease:
            raise ConfigurationRefused(
                "WRITEBACK_SWEEP_INTERVAL must be shorter than WRITEBACK_STEP_LEASE"
            )
