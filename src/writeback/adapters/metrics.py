"""Prometheus metrics: step durations and finished jobs from the worker, job counts by state
from the database (so every API process reports the same numbers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from writeback.adapters.db.tables import writeback_jobs

# Counted from the database: in flight (small, indexed) and failed (indexed); succeeded jobs
# are a growing table, so their rate comes from the worker's counter instead.
COUNTED_STATES = ("queued", "running", "retrying", "failed")


class WorkerMetrics:
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


class JobStateCollector(Collector):
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        query = (
            sa.select(writeback_jobs.c.state, sa.func.count())
            .where(writeback_jobs.c.state.in_(COUNTED_STATES))
            .group_by(writeback_jobs.c.state)
        )
        with self._engine.connect() as conn:
            counts = {state: count for state, count in conn.execute(query).all()}
        gauge = GaugeMetricFamily("writeback_jobs", "Jobs by state.", labels=["state"])
        for state in COUNTED_STATES:
            gauge.add_metric([state], counts.get(state, 0))
        yield gauge


def api_metrics(engine: sa.Engine) -> Callable[[], bytes]:
    registry = CollectorRegistry()
    registry.register(JobStateCollector(engine))
    return lambda: generate_latest(registry)
