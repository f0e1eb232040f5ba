"""Prometheus metrics: step durations, finished jobs and PSA answers counted in each process;
job counts by state (and by error code) from the database, so every API process reports the
same numbers.

Several processes (prefork worker children, gunicorn workers) count separately. With
PROMETHEUS_MULTIPROC_DIR set, prometheus_client keeps every process's values in files there and
an exposition sums them; without it, a prefork worker refuses to serve metrics (it would show
one child's share), and the API exports only the database figures."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from writeback.adapters.db.tables import db_now, sweeps, writeback_jobs
from writeback.domain.model import IN_FLIGHT_STATES, JobState

# Counted from the database: in flight (small, indexed) and failed (indexed); succeeded jobs
# are a growing table, so their rate comes from the worker's counter instead.
COUNTED_STATES = tuple(str(state) for state in (*IN_FLIGHT_STATES, JobState.FAILED))
# Jobs waiting for a retry, and failed ones, carry the code of what went wrong.
CODED_STATES = (str(JobState.RETRYING), str(JobState.FAILED))
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SINGLE_PROCESS_POOLS = ("threads", "thread", "solo", "eventlet", "gevent")


class MetricsConfigError(ValueError):
    """A process layout whose metrics would be silently wrong."""


def multiprocess_dir() -> Path | None:
    raw = os.environ.get(MULTIPROC_ENV)
    return Path(raw) if raw else None


def check_worker_metrics(pool: str, metrics_port: int | None) -> None:
    """Refuse, at start-up, a prefork worker serving metrics without the multiprocess folder."""
    if metrics_port and pool not in SINGLE_PROCESS_POOLS and multiprocess_dir() is None:
        raise MetricsConfigError(
            f"WRITEBACK_METRICS_PORT with the {pool!r} worker pool needs {MULTIPROC_ENV} "
            "(an empty folder, writable by the worker): each child process counts its own "
            "steps, and only that folder lets the metrics server add them up"
        )


class WorkerMetrics:
    """The metrics a process counts itself (the worker's steps; PSA answers in any process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.step_seconds = Histogram(
            "writeback_step_duration_seconds",
            "Time a pipeline step took, by step and result.",
            ["step", "result"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.jobs_finished = Counter(
            "writeback_jobs_finished_total",
            "Jobs that reached a final state, by state.",
            ["state"],
            registry=self.registry,
        )
        self.psa_answers = Counter(
            "writeback_psa_answers_total",
            "PSA HTTP answers by vendor, method and status (status 'none': no answer).",
            ["vendor", "method", "status"],
            registry=self.registry,
        )

    def observe_psa_answer(self, vendor: str, method: str, status: int | None) -> None:
        """The HTTP client's observer hook: one call per PSA request, with its provider's name."""
        self.psa_answers.labels(vendor, method.upper(), str(status or "none")).inc()

    def exposition_registry(self) -> CollectorRegistry:
        """What a scrape of this process serves: every process's values in multiprocess mode."""
        if multiprocess_dir() is None:
            return self.registry
        combined = CollectorRegistry()
        MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
        return combined


class JobStateCollector(Collector):
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        c = writeback_jobs.c
        query = (
            sa.select(c.state, c.error_code, sa.func.count())
            .where(c.state.in_(COUNTED_STATES))
            .group_by(c.state, c.error_code)
        )
        with self._engine.connect() as conn:
            rows = [tuple(row) for row in conn.execute(query)]
            since_sweep = seconds_since_sweep(conn)
        by_state = GaugeMetricFamily("writeback_jobs", "Jobs by state.", labels=["state"])
        by_code = GaugeMetricFamily(
            "writeback_jobs_by_error_code",
            "Jobs waiting for a retry, and failed jobs, by the code of their last error.",
            labels=["state", "code"],
        )
        for state in COUNTED_STATES:
            by_state.add_metric([state], sum(n for s, _, n in rows if s == state))
        for state, error_code, count in rows:
            if state in CODED_STATES:
                by_code.add_metric([state, error_code or "none"], count)
        yield by_state
        yield by_code
        yield GaugeMetricFamily(
            "writeback_seconds_since_sweep",
            "Seconds since beat last swept, by the database's clock (+Inf: never). Held jobs "
            "wait for the sweep: a stopped beat holds every one of them.",
            value=since_sweep,
        )


def seconds_since_sweep(conn: sa.Connection) -> float:
    """By the database's clock; +Inf when beat never swept."""
    row = conn.execute(sa.select(db_now(), sweeps.c.at).where(sweeps.c.name == "sweep")).first()
    if row is None or row.at is None:
        return math.inf
    since: float = (row[0] - row.at).total_seconds()
    return max(0.0, since)


def api_metrics(engine: sa.Engine) -> Callable[[], bytes]:
    """The database figures, plus in multiprocess mode what every process counted (PSA answers
    of connection checks in each gunicorn worker, the workers' steps)."""
    registry = CollectorRegistry()
    registry.register(JobStateCollector(engine))
    if multiprocess_dir() is not None:
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return lambda: generate_latest(registry)
