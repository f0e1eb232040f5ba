"""The lifecycle simulator in the suite: a fixed set of seeds, the seeds that once found a bug,
the same run from the same seed whatever the process, and mutants of the fixes it must catch
(a simulator that cannot fail proves nothing)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.simulation.__main__ import replay_command, run_seed
from tests.simulation.mutants import MUTANTS

ROOT = Path(__file__).resolve().parents[2]
# `make test` runs these; `python -m tests.simulation --seeds N` runs more.
DEFAULT_SEEDS = range(int(os.environ.get("WRITEBACK_SIM_SEEDS", "300")))
# Seeds that found a bug beyond the partial-failure issue, kept once it was fixed.
REGRESSIONS = {
    162: "a post and a finalize locked the session and the job in opposite orders: deadlock",
    279: "the same deadlock, on RabbitMQ",
    430: "a step's permanent failure was taken for another job's retry",
    612: "the sweep waited behind the locks of a paused worker's transaction",
    1563: "a pause of the sender delayed a request it had already sent",
    1696: "a killed worker's thread acknowledged its message as it unwound (late acks)",
    1968: "a message taken again by a consumer that then died was owed one recovery, not two",
    1986: "a refusal whose result was dropped was taken for the job's own",
    4787: "a step paused before a refusal, reading once it resumed, was taken for a retry",
    6000: "a message re-sent by the unsent net and dropped was owed the pick-up net from the kill",
    19584: "a message lost in a Redis restart was owed the sweep's re-send from the restart",
    34642: "a job's new message was owed no more than what was left of its previous one's",
}


def _violations(seed: int) -> list[str]:
    return run_seed(seed)[1]


@pytest.mark.parametrize("seed", sorted(REGRESSIONS))
def test_a_seed_that_once_found_a_bug_holds(seed: int) -> None:
    assert _violations(seed) == [], f"{REGRESSIONS[seed]}; replay: {replay_command(seed)}"


def test_the_default_seeds_hold_every_invariant() -> None:
    failed = {seed: found for seed in DEFAULT_SEEDS if (found := _violations(seed))}
    report = "\n".join(f"{found[0]}\n  replay: {replay_command(s)}" for s, found in failed.items())
    assert not failed, f"{len(failed)} of {len(DEFAULT_SEEDS)} seeds violate:\n{report}"


def test_a_seed_gives_the_same_run_in_any_process() -> None:
    """Event by event (the trace's digest), whatever Python's hash seed."""
    digests = set()
    for hash_seed in ("1", "2"):
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "from tests.simulation.__main__ import run_seed;print(run_seed(58)[2])",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            check=True,
        )
        digests.add(done.stdout.strip())
    assert len(digests) == 1 and run_seed(58)[2] in digests


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_the_simulator_finds_each_fix_undone(name: str) -> None:
    with MUTANTS[name]():
        found = next((seed for seed in DEFAULT_SEEDS if _violations(seed)), None)
    assert found is not None, f"with {name} undone, no default seed violates: it is blind"
    print(f"{name}: found by seed {found}")
