"""The five figures of docs/BENCHMARKS.md, each measured next to its baseline in the same run."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import redis
import requests
from celery import Celery, chain
from tests.support import REDIS_URL, Process, compose_command, free_port, wait_until

from bench.stack import Stack, timed
from writeback.cli.dev import sse_events
from writeback.domain.accounts import Principal
from writeback.domain.model import JobFilter
from writeback.domain.repost import stream_jobs


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    baseline: float
    baseline_name: str
    target: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")

    def line(self) -> str:
        return (
            f"{self.name:<44} {self.value:>10.2f} {self.unit:<8} | {self.baseline_name:<36} "
            f"{self.baseline:>10.2f} | ratio {self.ratio:6.2f} {self.target}"
        )


def pipeline_overhead(stack: Stack, jobs: int) -> list[Figure]:
    """1. Jobs/s end to end against an instant PSA / chains/s of 5 no-op tasks."""
    account = stack.account()
    sessions = stack.sessions(account, jobs)
    with stack.worker("pipeline"):
        elapsed = timed(
            lambda: (stack.post_jobs(account[1], sessions), stack.wait_finished(account[0], jobs))
        )
    pipeline = jobs / elapsed

    counter, queue = f"bench:noop:{uuid.uuid4().hex}", f"bench-noop-{uuid.uuid4().hex[:6]}"
    extra = {"BENCH_NOOP_COUNTER": counter, "BENCH_NOOP_QUEUE": queue}
    client = redis.Redis.from_url(REDIS_URL)
    producer = Celery("bench-producer", broker=REDIS_URL)
    producer.conf.task_default_queue = queue
    with stack.worker("noop", app="bench.noop", extra_env=extra):

        def run_chains() -> None:
            for n in range(jobs):
                links = [
                    producer.signature("bench.noop", args=(str(n),), immutable=True)
                    for _ in range(4)
                ]
                chain(
                    *links, producer.signature("bench.done", args=(str(n),), immutable=True)
                ).apply_async()
            wait_until(lambda: int(client.get(counter) or 0) >= jobs, timeout=600, interval=0.02)

        baseline = jobs / timed(run_chains)
    client.delete(counter, queue)
    producer.close()
    return [
        Figure(
            "1. pipeline jobs/s (POST -> succeeded)",
            pipeline,
            "jobs/s",
            baseline,
            "bare 5-task no-op chains/s",
            "target >= 0.5",
        )
    ]


def job_latency(stack: Stack, samples: int) -> list[Figure]:
    """7. p50 latency of one job, POST to succeeded, on an idle system with an instant PSA /
    p50 latency of one bare 5-task chain on the same broker (each sample alone)."""
    account = stack.account()
    sessions = stack.sessions(account, samples)
    with stack.worker("latency"):
        for done, session_id in enumerate(sessions, 1):
            stack.post_jobs(account[1], [session_id], clients=1)
            stack.wait_finished(account[0], done)
        with stack.container.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT extract(epoch FROM finished_at - created_at) FROM writeback_jobs "
                f"WHERE account_id = {account[0]}"
            )
            latencies = sorted(float(row[0]) for row in rows)

    counter, queue = f"bench:noop:{uuid.uuid4().hex}", f"bench-noop-{uuid.uuid4().hex[:6]}"
    extra = {"BENCH_NOOP_COUNTER": counter, "BENCH_NOOP_QUEUE": queue}
    client = redis.Redis.from_url(REDIS_URL)
    producer = Celery("bench-producer", broker=REDIS_URL)
    producer.conf.task_default_queue = queue
    chains = []
    with stack.worker("noop", app="bench.noop", extra_env=extra):
        for n in range(samples):
            links = [producer.signature("bench.noop", args=(str(n),), immutable=True)] * 4
            done = producer.signature("bench.done", args=(str(n),), immutable=True)
            started = time.perf_counter()
            chain(*links, done).apply_async()
            wait_until(lambda n=n: int(client.get(counter) or 0) > n, timeout=60, interval=0.001)
            chains.append(time.perf_counter() - started)
    client.delete(counter, queue)
    producer.close()
    return [
        Figure(
            "7. p50 latency of one job (POST -> succeeded)",
            statistics.median(latencies) * 1000,
            "ms",
            statistics.median(chains) * 1000,
            "p50 latency of a bare 5-task chain",
            "target <= 3",
        )
    ]


def io_concurrency(
    stack: Stack, jobs: int, delay: float = 0.2, concurrency: int = 64
) -> list[Figure]:
    """2. Wall time with every PSA call 200 ms slower / the ideal of perfect overlap."""
    account = stack.account()
    sessions = stack.sessions(account, jobs)
    stack.sim.fault("slow", delay=delay, times=-1)
    before = len(stack.sim.all_calls())
    with stack.worker("io", extra_env={"WRITEBACK_WORKER_CONCURRENCY": str(concurrency)}):
        wall = timed(
            lambda: (
                stack.post_jobs(account[1], sessions, clients=32),
                stack.wait_finished(account[0], jobs),
            )
        )
    stack.sim.clear_faults()
    calls_per_job = (len(stack.sim.all_calls()) - before) / jobs
    ideal = calls_per_job * delay * jobs / concurrency
    return [
        Figure(
            f"2. wall time, {jobs} jobs, +{delay * 1000:.0f} ms/call, {concurrency} thr",
            wall,
            "s",
            ideal,
            f"ideal ({calls_per_job:.1f} calls/job overlapped)",
            "target <= 1.3",
        )
    ]


WRK_POST = """
local ids = {%s}
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  i = tid - 2
end
request = function()
  i = i + 2  -- two wrk threads take alternate sessions: each session is posted once
  local id = ids[((i - 1) %% #ids) + 1]
  return wrk.format("POST", "/api/v1/ai-sessions/" .. id .. "/resolution-note/post",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %s"},
    '{"markdown": "## Resolution\\\\nDone."}')
end
"""


def _wrk(
    url: str,
    seconds: int,
    logs: Path,
    script: str | None = None,
    token: str | None = None,
    headers: list[str] | None = None,
) -> tuple[float, float, float]:
    """requests/s, p50 ms, p99 ms from wrk with 50 connections."""
    args = ["wrk", "-t", "2", "-c", "50", "-d", f"{seconds}s", "--latency"]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    for header in headers or []:
        args += ["-H", header]
    if script:
        path = logs / f"wrk-{uuid.uuid4().hex[:6]}.lua"
        path.write_text(script)
        args += ["-s", str(path)]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]

    def percentile(label: str) -> float:
        value, unit = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    if "Non-2xx" in out:
        raise AssertionError(f"wrk saw error answers:\n{out}")
    return rps, percentile("50"), percentile("99")


def api_under_load(stack: Stack, seconds: int, logs: Path) -> list[Figure]:
    """3. Job polling and job posting through gunicorn / a minimal route on the same setup."""
    port = free_port()
    minimal = Process(
        "minimal",
        compose_command(
            "api",
            {"0.0.0.0:8000": f"127.0.0.1:{port}", "writeback.wsgi:app": "bench.minimal_app:app"},
        ),
        {**stack.env, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        logs,
    )
    minimal_url = f"http://127.0.0.1:{port}/minimal"
    try:
        wait_until(lambda: _ok(minimal_url), timeout=30)
        account_id, token, _ = stack.account(statuses=False)
        session_ids = _bulk_sessions(stack, account_id, 60_000 if seconds > 3 else 5_000)
        polled, unchanged = (_post_one(stack, token, session_id) for session_id in session_ids[:2])
        # The baseline before and after, averaged: the machine is shared and drifts.
        before = _wrk(minimal_url, seconds, logs)
        # 3a: no If-None-Match, as a poll of a job that changed since: the full answer.
        get_rps, get_p50, get_p99 = _wrk(
            f"{stack.api_url}/api/v1/jobs/{polled}", seconds, logs, token=token
        )
        # 3c: the job has not changed: 304 from the version in Redis, no database read.
        etag = requests.get(
            f"{stack.api_url}/api/v1/jobs/{unchanged}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).headers["ETag"]
        cond_rps, cond_p50, cond_p99 = _wrk(
            f"{stack.api_url}/api/v1/jobs/{unchanged}",
            seconds,
            logs,
            token=token,
            headers=[f"If-None-Match: {etag}"],
        )
        ids = ",".join(str(i) for i in session_ids[2:])
        post_rps, post_p50, post_p99 = _wrk(
            stack.api_url, seconds, logs, script=WRK_POST % (ids, token)
        )
        after = _wrk(minimal_url, seconds, logs)
    finally:
        minimal.stop()
    base_rps = (before[0] + after[0]) / 2
    base_p50, base_p99 = before[1], before[2]
    base = f"minimal route (p50 {base_p50:.1f} ms, p99 {base_p99:.1f} ms)"
    return [
        Figure(
            f"3a. GET /jobs/{{id}} req/s (p50 {get_p50:.1f}, p99 {get_p99:.1f} ms)",
            get_rps,
            "req/s",
            base_rps,
            base,
            "target >= 0.6",
        ),
        Figure(
            f"3b. POST .../post req/s (p50 {post_p50:.1f}, p99 {post_p99:.1f} ms)",
            post_rps,
            "req/s",
            base_rps,
            base,
            "target p99 <= 150 ms",
        ),
        Figure(
            f"3c. GET /jobs/{{id}} 304 req/s (p50 {cond_p50:.1f}, p99 {cond_p99:.1f} ms)",
            cond_rps,
            "req/s",
            base_rps,
            base,
            "target >= 0.8",
        ),
    ]


def _post_one(stack: Stack, token: str, session_id: int) -> str:
    response = requests.post(
        f"{stack.api_url}/api/v1/ai-sessions/{session_id}/resolution-note/post",
        json={"markdown": "## Resolution\nDone."},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["job_id"])


def sse_latency(stack: Stack, jobs: int) -> list[Figure]:
    """6. Time from a step's commit to its event at an SSE client, with `jobs` streams open
    while the worker runs their jobs / polling at the interval the stream falls back to (half
    of it, on average). The commit's moment is its publish as heard by a process of its own;
    the events' own stamps, taken before their commits, give the older, longer measure."""
    account = stack.account()
    sessions = stack.sessions(account, jobs)
    # Streams open on queued jobs, then the worker starts: every step happens live.
    job_ids = [_post_one(stack, account[1], session_id) for session_id in sessions]
    heard = stack.logs / f"publishes-{uuid.uuid4().hex[:6]}.txt"
    listener = Process(
        "publishes", [sys.executable, "-m", "bench.publishes", str(heard)], stack.env, stack.logs
    )
    received: list[tuple[str, float, float]] = []
    try:
        wait_until(lambda: heard.exists() and "listening" in heard.read_text(), timeout=30)
        with ThreadPoolExecutor(max_workers=len(job_ids)) as pool:
            streams = [pool.submit(_stream_arrivals, stack.api_url, account[1], j) for j in job_ids]
            time.sleep(1.0)  # every stream connected
            with stack.worker("sse"):
                for stream in streams:
                    received += stream.result()
    finally:
        listener.stop()
    published: dict[str, list[float]] = {}
    for line in heard.read_text().splitlines()[1:]:
        job_id, moment = line.split()
        published.setdefault(job_id, []).append(float(moment))
    # An event's commit is the job's first publish after the event's stamp.
    from_commit = sorted(
        arrived - min(t for t in published[job_id] if t >= at) for job_id, at, arrived in received
    )
    from_stamp = sorted(arrived - at for _, at, arrived in received)
    p50, p99 = _percentile(from_commit, 0.5), _percentile(from_commit, 0.99)
    poll_interval = stack.container.settings.sse_poll_interval
    return [
        Figure(
            f"6. SSE commit -> client p50 ms ({len(from_commit)} events, {jobs} streams; "
            f"p99 {p99:.1f} ms; from the event's stamp p50 {_percentile(from_stamp, 0.5):.1f}, "
            f"p99 {_percentile(from_stamp, 0.99):.1f} ms)",
            p50,
            "ms",
            poll_interval * 1000 / 2,
            f"polling every {poll_interval:g} s (mean wait)",
            "target p50 <= 20 ms, p99 <= 100 ms",
        )
    ]


def _percentile(sorted_seconds: list[float], fraction: float) -> float:
    """In milliseconds; the nearest rank at or below."""
    return sorted_seconds[min(len(sorted_seconds) - 1, int(len(sorted_seconds) * fraction))] * 1000


def _stream_arrivals(api_url: str, token: str, job_id: str) -> list[tuple[str, float, float]]:
    """(job, stamp, arrival) of each event committed after the stream opened."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    response = requests.get(
        f"{api_url}/api/v1/jobs/{job_id}/events", headers=headers, stream=True, timeout=60
    )
    opened, found = time.time(), []
    for event in sse_events(response):
        arrived = time.time()
        at = datetime.fromisoformat(event["at"]).timestamp()
        if at > opened:
            found.append((job_id, at, arrived))
    return found


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _bulk_sessions(stack: Stack, account_id: int, count: int) -> list[int]:
    user = stack._user(account_id)
    rows = stack.sql(
        "INSERT INTO ai_sessions (account_id, user_id, session_type, intake_type, "
        "intake_content, conversation_messages, status, state_version, created_at, updated_at) "
        "SELECT :a, :u, 'chat', 'free_text', '{}', '[]', 'active', 1, now(), now() "
        "FROM generate_series(1, :n) RETURNING id",
        a=account_id,
        u=user,
        n=count,
    )
    return [int(row[0]) for row in rows]


STUCK = JobFilter(states=("failed",), kinds=("escalate",))


def scaling(stack: Stack, sizes: list[int], lookups: int, stuck: int) -> list[Figure]:
    """4. Status lookup and the repost scan at growing table sizes / the smallest size."""
    account_id, token, _ = stack.account(statuses=False)
    principal = Principal(account_id, stack._user(account_id))
    [session_id] = _bulk_sessions(stack, account_id, 1)
    stack.sql(  # the stuck ones: failed escalations
        "INSERT INTO writeback_jobs (id, account_id, session_id, kind, tenant, state, step, "
        "attempts, redeliveries, version, created_at, updated_at, error_code) SELECT "
        "gen_random_uuid()::text, :a, :s, 'escalate', 'local:' || :a, 'failed', 'verify', 4, 0, "
        "0, now(), now(), 'status_verification_failed' FROM generate_series(1, :n)",
        a=account_id,
        s=session_id,
        n=stuck,
    )
    results: list[tuple[int, float, float]] = []
    rows = stuck
    for size in sizes:
        stack.sql(  # a session each: a session is resolved once
            "WITH s AS (INSERT INTO ai_sessions (account_id, user_id, session_type, intake_type, "
            "intake_content, conversation_messages, status, state_version, created_at, "
            "updated_at) SELECT :a, :u, 'chat', 'free_text', '{}', '[]', 'resolved', 2, now(), "
            "now() FROM generate_series(1, :n) RETURNING id) "
            "INSERT INTO writeback_jobs (id, account_id, session_id, kind, tenant, state, step, "
            "attempts, redeliveries, version, outcome, created_at, updated_at) SELECT "
            "gen_random_uuid()::text, :a, s.id, 'resolve', 'local:' || :a, 'succeeded', 'done', "
            "0, 0, 6, 'resolved', now() - make_interval(secs => s.id), now() FROM s",
            a=account_id,
            u=stack._user(account_id),
            n=size - rows,
        )
        rows = size
        stack.sql("ANALYZE writeback_jobs")
        with stack.container.engine.connect() as conn:
            ids = [
                r[0]
                for r in conn.exec_driver_sql(
                    f"SELECT id FROM writeback_jobs WHERE account_id = {account_id} "
                    f"ORDER BY random() LIMIT {lookups}"
                )
            ]
        started = time.perf_counter()
        for job_id in ids:
            stack.container.jobs.get(principal, job_id)
        per_lookup = (time.perf_counter() - started) / len(ids)
        started = time.perf_counter()
        found = sum(1 for _ in stream_jobs(STUCK, uow=stack.container.uow))
        scan = time.perf_counter() - started
        assert found == stuck, found
        results.append((size, per_lookup * 1000, scan * 1000))
    first = results[0]
    figures = []
    for size, lookup_ms, scan_ms in results:
        figures.append(
            Figure(
                f"4a. job lookup at {size:,} rows",
                lookup_ms,
                "ms",
                first[1],
                f"job lookup at {first[0]:,} rows",
                "flat",
            )
        )
        figures.append(
            Figure(
                f"4b. repost scan ({stuck} stuck) at {size:,} rows",
                scan_ms,
                "ms",
                first[2],
                f"repost scan at {first[0]:,} rows",
                "flat",
            )
        )
    return figures


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def worker_memory(stack: Stack, small: int, large: int) -> list[Figure]:
    """5. Worker RSS after `large` jobs / after `small` jobs."""
    account = stack.account()
    with stack.worker("memory") as worker:
        sessions = stack.sessions(account, small)
        stack.post_jobs(account[1], sessions)
        stack.wait_finished(account[0], small)
        after_small = rss_kib(worker.popen.pid)
        done = small
        while done < large:  # in batches, so the simulator's tickets stay cheap to make
            batch = min(2000, large - done)
            stack.post_jobs(account[1], stack.sessions(account, batch))
            done += batch
            stack.wait_finished(account[0], done)
        after_large = rss_kib(worker.popen.pid)
    return [
        Figure(
            f"5. worker RSS after {large:,} jobs",
            after_large / 1024,
            "MiB",
            after_small / 1024,
            f"worker RSS after {small:,} jobs",
            "no growth",
        )
    ]


def emit(figures: list[Figure]) -> None:
    for figure in figures:
        print(figure.line(), flush=True)
    print(
        json.dumps(
            [
                {
                    "name": f.name,
                    "value": round(f.value, 3),
                    "unit": f.unit,
                    "baseline": round(f.baseline, 3),
                    "ratio": round(f.ratio, 3),
                }
                for f in figures
            ]
        ),
        file=sys.stderr,
    )
