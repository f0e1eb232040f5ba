"""What a scenario's end looks like from outside: the jobs as the API shows them and the notes
on the simulator's tickets, as lists of problems (empty when all is well), so one failure can
say everything that broke."""

from __future__ import annotations

import time
from typing import Any

from tests.support import FINISHED, Api, Simulator


def finished(client: Api, jobs: list[str], deadline: float) -> list[dict[str, Any]]:
    """The jobs once all are finished, or as they stand at `deadline` (a monotonic time)."""
    while True:
        states = [client.get(f"/jobs/{job_id}") for job_id in jobs]
        if all(j["state"] in FINISHED for j in states) or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def jobs_off(jobs: list[dict[str, Any]]) -> list[str]:
    return [
        f"job {j['id']} {j['state']} at {j['step']} (attempts {j['attempts']}): {j['error']}"
        for j in jobs
        if j["state"] != "succeeded"
    ]


def note_counts(sim: Simulator, tickets: list[str]) -> dict[str, int]:
    return {ticket: len(sim.ticket(ticket)["notes"]) for ticket in tickets}


def notes_off(sim: Simulator, tickets: list[str]) -> list[str]:
    """0 duplicates and 0 lost notes: every ticket that does not carry exactly one."""
    return [f"{n} notes on ticket {t}" for t, n in note_counts(sim, tickets).items() if n != 1]
