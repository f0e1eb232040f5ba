"""The Grafana dashboard selects only what the service emits. Jobs that advance, wait (a 429, a
lost answer, a PSA outage) and fail run through a real API, worker and simulator; every
/metrics scrape meanwhile is kept. Then each dashboard query's label matchers must select values
that were emitted, and its `by (...)` labels must exist: a panel filtering on a value no longer
emitted would be empty, which reads as "nothing happened"."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import _up, http_api, run_cli
from tests.support import Process, Simulator, celery_worker, compose_command, free_port, wait_until

pytestmark = pytest.mark.e2e

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "psa-writeback.json"
SELECTOR = re.compile(r"\b(writeback_\w+)(?:\{([^}]*)\})?")
# A negative matcher on a value never emitted is as stale as a positive one: both are checked.
MATCHER = re.compile(r'(\w+)\s*(?:=~|!~|!=|=)\s*"([^"]*)"')
BY = re.compile(r"\bby\s*\(([^)]*)\)")
# sample name -> label -> the values seen in any scrape
Emitted = defaultdict[str, defaultdict[str, set[str]]]


class Scrapes:
    """Every scrape of the API's and the worker's /metrics, label values added up."""

    def __init__(self, *urls: str) -> None:
        self.urls = urls
        self.emitted: Emitted = defaultdict(lambda: defaultdict(set))

    def scrape(self) -> Emitted:
        for url in self.urls:
            for family in text_string_to_metric_families(requests.get(url, timeout=5).text):
                for sample in family.samples:
                    labels = self.emitted[sample.name]
                    for name, value in sample.labels.items():
                        labels[name].add(value)
        return self.emitted


@dataclass
class Deployment:
    env: dict[str, str]
    api_url: str
    metrics: Scrapes


@pytest.fixture
def deployment(private_env: dict[str, str], logs: Path) -> Iterator[Deployment]:
    """The API (gunicorn) and a worker with beat and a metrics port, on a database of their own."""
    api_port, metrics_port = free_port(), free_port()
    env = {**private_env, "WRITEBACK_METRICS_PORT": str(metrics_port)}
    api_command = compose_command("api", {"0.0.0.0:8000": f"127.0.0.1:{api_port}"})
    api_url, worker_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{metrics_port}"
    api = Process("dashboard-api", api_command, env, logs)
    try:
        # The API first, as in the other stacks: it makes the data folder beat keeps its file in.
        wait_until(lambda: _up(f"{api_url}/readyz"), timeout=30)
        worker = celery_worker(env, logs, "dashboard-worker", beat=True)
        try:
            wait_until(lambda: _up(f"{worker_url}/metrics"), timeout=10)
            yield Deployment(env, api_url, Scrapes(f"{api_url}/metrics", f"{worker_url}/metrics"))
        finally:
            worker.stop()
    finally:
        api.stop()


def _selections(expr: str) -> Iterator[tuple[str, str, str]]:
    """(metric, label, value) of every label matcher in a PromQL expression."""
    for metric, matchers in SELECTOR.findall(expr):
        for label, value in MATCHER.findall(matchers):
            yield metric, label, value


def _unemitted(expr: str, emitted: Emitted) -> list[str]:
    faults = []
    metrics = {metric for metric, _ in SELECTOR.findall(expr)}
    faults += [f"{m} was never emitted" for m in metrics if m not in emitted]
    for metric, label, value in _selections(expr):
        seen = emitted[metric][label]
        # An alternation selects several values: each alternative must select one seen.
        for alternative in value.split("|"):
            if not any(re.fullmatch(alternative, v) for v in seen):
                faults.append(f'{metric}{{{label}="{alternative}"}}: emitted {sorted(seen)}')
    labels = {label for metric in metrics for label in emitted[metric]}
    for grouping in BY.findall(expr):
        missing = {name.strip() for name in grouping.split(",")} - labels
        faults += [f"by ({name}): no such label on {sorted(metrics)}" for name in missing]
    return faults


def test_every_dashboard_query_selects_what_the_service_emits(
    deployment: Deployment, simulator_process: Simulator
) -> None:
    account = run_cli(deployment.env, "accounts", "create", "dashboard")
    client = http_api(deployment.api_url, account["token"])
    client.put("/account-settings", {"resolved_status_id": 42}, expect=200)
    connection_id = client.connect_simulator(simulator_process.url)
    sim, metrics = simulator_process, deployment.metrics

    def start(ticket: str) -> str:
        return str(client.start(client.session(connection_id, ticket))["job_id"])

    advances = start(sim.new_ticket())
    rate_limited = sim.new_ticket()
    sim.fault("rate_limit", rate_limited, times=1, retry_after=1)
    waits_out_a_429 = start(rate_limited)
    lost = sim.new_ticket()
    sim.fault("drop_after_store", lost, method="POST", times=1)
    waits_for_the_lost_answer = start(lost)
    down = sim.new_ticket()
    sim.fault("server_error", down, status=503, times=-1)  # retried until attempts run out
    fails = start(down)

    # While the outage's job waits for a retry, the database gauges show it by its code.
    wait_until(
        lambda: "retrying" in metrics.scrape()["writeback_jobs_by_error_code"]["state"],
        timeout=30,
        interval=0.2,
    )
    for job_id in (advances, waits_out_a_429, waits_for_the_lost_answer):
        assert client.wait_job(job_id, timeout=60)["state"] == "succeeded"
    failed = client.wait_job(fails, timeout=60)
    assert failed["state"] == "failed" and failed["error"]["code"] == "psa_unavailable", failed
    emitted = metrics.scrape()
    assert {"advance", "held", "failed", "finished"} <= emitted[
        "writeback_step_duration_seconds_count"
    ]["result"]

    dashboard = json.loads(DASHBOARD.read_text())
    queries = [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]
    assert queries
    faults = [f"{title}: {fault}" for title, expr in queries for fault in _unemitted(expr, emitted)]
    assert not faults, "\n".join(faults)
