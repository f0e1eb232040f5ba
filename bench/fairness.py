"""8. Load under a tenant's PSA request budget (issue 14).

8a. Tenant B's job latency behind tenant A's batch / B's latency alone, both at the same budget
    rate, B on a PSA site of its own (its own budget). Target <= 2.
8b. `writeback repost-stuck` over N stuck escalations of one tenant at its budget rate: the
    measured jobs/s / the budget's pace (rate / PSA calls per job), with the projected time of a
    10,000-job repost.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from tests.faults.deployment import start_simulator
from tests.support import wait_until

from bench.figures import Figure
from bench.stack import Stack, timed
from writeback.domain.model import JobKind

CALLS_PER_JOB = 5  # read the ticket, post the note, read, change the status, read it back


def _count(stack: Stack, account_id: int, state: str) -> int:
    return int(
        stack.sql(
            "SELECT count(*) FROM writeback_jobs WHERE account_id = :a AND state = :s",
            a=account_id,
            s=state,
        ).scalar_one()
    )


def tenant_fairness(stack: Stack, batch: int, rate: float) -> list[Figure]:
    """8a. B's latency behind A's `batch` / B's latency alone, at `rate` requests/s."""
    process, sim_b = start_simulator("connectwise", stack.logs, "simulator-b")
    a, b = stack.account(), stack.account(sim=sim_b)
    a_sessions = stack.sessions(a, batch)
    b_sessions = stack.sessions(b, 4, sim=sim_b)
    try:
        with stack.worker("fairness", extra_env={"WRITEBACK_PSA_RATE": str(rate)}):
            alone = []
            for done, session_id in enumerate(b_sessions[:3], start=1):
                alone.append(
                    timed(
                        lambda s=session_id, n=done: (
                            stack.post_jobs(b[1], [s]),
                            stack.wait_finished(b[0], n),
                        )
                    )
                )
            stack.post_jobs(a[1], a_sessions)
            behind = timed(
                lambda: (stack.post_jobs(b[1], b_sessions[3:]), stack.wait_finished(b[0], 4))
            )
            stack.wait_finished(a[0], batch)
    finally:
        process.stop()
    return [
        Figure(
            f"8a. tenant B latency behind A's {batch} at {rate:g}/s",
            behind,
            "s",
            statistics.median(alone),
            "tenant B latency alone",
            "target <= 2",
        )
    ]


def repost_throughput(stack: Stack, stuck: int, rate: float) -> list[Figure]:
    """8b. repost-stuck jobs/s over `stuck` escalations of one tenant at `rate` requests/s / the
    budget's pace."""
    account = stack.account()
    sessions = stack.sessions(account, stuck)
    # An outage: every ticket read fails, so the escalations end failed before any note.
    outage = stack.sim.fault("server_error", method="GET", status=503, times=-1)
    with stack.worker("outage"):
        stack.post_jobs(account[1], sessions, kind=JobKind.ESCALATE)
        stack.wait_finished(account[0], stuck)
    stack.sim.clear_fault(outage)
    assert _count(stack, account[0], "failed") == stuck

    with stack.worker("repost", extra_env={"WRITEBACK_PSA_RATE": str(rate)}):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "writeback", "repost-stuck", "--account", str(account[0])],
            env=stack.env,
            check=True,
            capture_output=True,
            timeout=600,
        )
        wait_until(
            lambda: _count(stack, account[0], "succeeded") >= stuck, timeout=3600, interval=0.2
        )
        elapsed = time.perf_counter() - started
    measured = stuck / elapsed
    hours = 10_000 / measured / 3600
    return [
        Figure(
            f"8b. repost-stuck of {stuck} at {rate:g}/s (10,000: {hours:.1f} h)",
            measured,
            "jobs/s",
            rate / CALLS_PER_JOB,
            f"budget pace ({CALLS_PER_JOB} calls/job)",
            "target ~1",
        )
    ]
