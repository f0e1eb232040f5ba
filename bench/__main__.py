"""`python -m bench [--smoke] [--only N ...]`: measure, print each figure beside its baseline."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench import fairness, figures
from bench.stack import Stack

FULL = {
    "jobs": 500,
    "io_jobs": 500,
    "seconds": 10,
    "sizes": [1_000, 100_000, 1_000_000],
    "lookups": 2000,
    "stuck": 200,
    "memory": (100, 10_000),
    "latency_samples": 30,
    "sse_jobs": 30,
    # Issue 14: A's batch at 6 requests/s; the repost at ConnectWise's default rate, 1/s.
    "fairness": (120, 6.0),
    "repost": (60, 1.0),
}
SMOKE = {
    "jobs": 10,
    "io_jobs": 20,
    "seconds": 1,
    "sizes": [100, 1_000],
    "lookups": 50,
    "stuck": 10,
    "memory": (5, 20),
    "latency_samples": 3,
    "sse_jobs": 2,
    "fairness": (10, 50.0),
    "repost": (4, 50.0),
}


def main(argv: list[str] | None = None) -> list[figures.Figure]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: proves it runs")
    parser.add_argument("--only", type=int, nargs="*", default=[1, 2, 3, 4, 5, 6, 7, 8])
    args = parser.parse_args(argv)
    size = SMOKE if args.smoke else FULL
    results: list[figures.Figure] = []
    with tempfile.TemporaryDirectory(prefix="wb-bench-") as tmp:
        logs = Path(tmp)
        stack = Stack(logs, concurrency=16)
        try:
            steps = {
                1: lambda: figures.pipeline_overhead(stack, size["jobs"]),
                2: lambda: figures.io_concurrency(stack, size["io_jobs"]),
                3: lambda: figures.api_under_load(stack, size["seconds"], logs),
                4: lambda: figures.scaling(stack, size["sizes"], size["lookups"], size["stuck"]),
                5: lambda: figures.worker_memory(stack, *size["memory"]),
                6: lambda: figures.sse_latency(stack, size["sse_jobs"]),
                7: lambda: figures.job_latency(stack, size["latency_samples"]),
                8: lambda: _under_budget(logs / "budget", size),
            }
            for number in args.only:
                found = steps[number]()
                figures.emit(found)
                results += found
        finally:
            stack.close()
    return results


def _under_budget(logs: Path, size: dict[str, Any]) -> list[figures.Figure]:
    """Figure 8 on a stack of its own with the default admission slots, as deployed: tenant
    fairness is what they are for."""
    logs.mkdir()
    stack = Stack(logs, concurrency=16, admission=True)
    try:
        return fairness.tenant_fairness(stack, *size["fairness"]) + fairness.repost_throughput(
            stack, *size["repost"]
        )
    finally:
        stack.close()


if __name__ == "__main__":
    main()
