"""A worker SIGKILLed mid-step, as an OOM kill or a lost host does it, and replaced at once (as
`restart: unless-stopped` does): the job is taken over and posts exactly one note."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults.conftest import (
    Deployment,
    assert_all_succeeded,
    assert_one_note_each,
    deploy,
    watch,
)
from tests.faults.deployment import bare_env, new_database
from tests.faults.outcomes import note_counts
from tests.servers import PrivatePostgres, PrivateRedis
from tests.support import Simulator, wait_until

pytestmark = pytest.mark.faults

RECOVERY_CONTRACT = 60.0  # issue 9: a killed worker's job runs again within 60 s, on defaults


def _start_and_kill(d: Deployment, method: str) -> tuple[str, str, float]:
    """A resolve whose `method` call to the PSA in post_note takes 3 s, the worker SIGKILLed
    0.5 s into that call and a fresh one started: (ticket, job id, monotonic time of the kill).

    post_note first reads the ticket (its board decides the target status), then posts."""
    ticket, session = d.ticket_session()
    d.sim.fault("slow", ticket, method=method, delay=3.0)
    job_id = d.client.start(session)["job_id"]
    wait_until(lambda: d.client.get(f"/jobs/{job_id}")["step"] == "post_note", timeout=30)
    wait_until(lambda: len(d.sim.calls(ticket)) >= int(method == "POST"), timeout=30)
    time.sleep(0.5)
    killed = time.monotonic()
    d.stack.replace_worker()
    return ticket, job_id, killed


def test_a_worker_killed_before_the_psa_stored_the_note_posts_it_once(
    deployment: Deployment,
) -> None:
    ticket, job_id, _ = _start_and_kill(deployment, "GET")
    assert note_counts(deployment.sim, [ticket])[ticket] == 0, "scenario: a note before the kill"

    assert_all_succeeded([deployment.wait_job(job_id, timeout=90)])
    assert_one_note_each(deployment.sim, [ticket])


def test_a_worker_killed_after_the_psa_stored_the_note_finds_it_and_posts_no_second(
    deployment: Deployment,
) -> None:
    """The PSA stores the note of the POST in flight after the worker that sent it died."""
    ticket, job_id, _ = _start_and_kill(deployment, "POST")
    stored = watch(lambda: note_counts(deployment.sim, [ticket])[ticket] >= 1, timeout=10)
    assert stored is not None, "scenario: the PSA never stored the note of the killed worker"

    assert_all_succeeded([deployment.wait_job(job_id, timeout=90)])
    assert_one_note_each(deployment.sim, [ticket])


def test_recovery_after_a_sigkill_on_default_settings_is_within_60_s(
    pg: PrivatePostgres, broker: PrivateRedis, sim: Simulator, tmp_path: Path
) -> None:
    """Measured from the kill to the job's next PSA call (the job running again), with every
    WRITEBACK_* timing at its default."""
    env = bare_env(new_database(pg.admin_url), broker.url, tmp_path / "data")
    d = deploy(env, sim, tmp_path, "defaults")
    try:
        ticket, job_id, killed = _start_and_kill(d, "POST")
        # The killed worker's own POST is logged when the PSA answers it, marked "slow".
        again = watch(
            lambda: any("slow" not in c["faults"] for c in d.sim.calls(ticket)[1:]),
            timeout=RECOVERY_CONTRACT + 15 - (time.monotonic() - killed),
            interval=0.2,
        )
        recovery = None if again is None else time.monotonic() - killed
        print(f"recovery after SIGKILL on default settings: {recovery} s")
        assert recovery is not None and recovery <= RECOVERY_CONTRACT, (
            f"the job did not run again within {RECOVERY_CONTRACT + 15:.0f} s of the SIGKILL"
            if recovery is None
            else f"the job ran again {recovery:.1f} s after the SIGKILL"
        )
        assert_all_succeeded([d.wait_job(job_id, timeout=60)])
        assert_one_note_each(d.sim, [ticket])
    finally:
        d.stack.stop()
