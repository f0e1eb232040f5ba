"""`python -m tests.simulation --seeds N [--first F] [--processes P]` runs seeds F..F+N-1 and
reports every violation with the command that replays it; `--seed S` replays one seed and
prints its trace: each actor's port calls, each fault, each job transition and PSA write."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext

from tests.simulation.mutants import MUTANTS
from tests.simulation.world import World


def run_seed(seed: int, tracing: bool = False) -> tuple[int, list[str], str, World]:
    logging.disable(logging.CRITICAL)  # the trace says what happened
    world = World(seed, tracing=tracing)
    try:
        violations = world.run().violations
    except Exception as exc:  # the world itself broke: as much a failure as a violation
        violations = [f"the run raised {type(exc).__name__}: {exc}"]
    return seed, violations, world.sim.digest, world


def _quiet(seed: int) -> tuple[int, list[str], str]:
    seed, violations, digest, _ = run_seed(seed)
    return seed, violations, digest


def replay_command(seed: int) -> str:
    return f"python -m tests.simulation --seed {seed}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.simulation", description=__doc__)
    parser.add_argument("--seed", type=int, help="replay one seed and print its trace")
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    parser.add_argument("--first", type=int, default=0, help="the first seed")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--mutant", choices=sorted(MUTANTS), help="with one fix undone")
    args = parser.parse_args(argv)
    with MUTANTS[args.mutant]() if args.mutant else nullcontext():  # the pool forks with it
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    if args.seed is not None:
        seed, violations, digest, world = run_seed(args.seed, tracing=True)
        print("\n".join(world.sim.lines))
        print(f"\nseed {seed}: {world.describe()}\ntrace digest {digest}")
        print("\n".join(f"VIOLATION {v}" for v in violations) or "no violation")
        return 1 if violations else 0
    started, failed = time.monotonic(), 0
    seeds = range(args.first, args.first + args.seeds)
    with ProcessPoolExecutor(args.processes) as pool:
        for seed, violations, _ in pool.map(_quiet, seeds, chunksize=16):
            if violations:
                failed += 1
                print(f"seed {seed}: {violations[0]}\n  replay: {replay_command(seed)}")
    took = time.monotonic() - started
    print(
        f"{args.seeds} seeds in {took:.0f} s ({60 * args.seeds / took:.0f} per minute), "
        f"{failed} with violations",
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
