"""Metrics counted in several processes are added up: a prefork worker with two children, and
gunicorn with two workers, each with PROMETHEUS_MULTIPROC_DIR (as docker-compose.yml runs them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import _up, http_api, run_cli
from tests.support import Process, Simulator, celery_worker, compose_command, free_port, wait_until

pytestmark = pytest.mark.e2e


def samples(url: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = requests.get(url, timeout=5).text
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


class MultiprocessStack:
    def __init__(self, env: dict[str, str], logs: Path, tmp: Path) -> None:
        api_port, self.worker_port = free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.api_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp / "api")}
        worker_env = {
            **env,
            "PROMETHEUS_MULTIPROC_DIR": str(tmp / "worker"),
            "WRITEBACK_WORKER_POOL": "prefork",
            "WRITEBACK_WORKER_CONCURRENCY": "2",
            "WRITEBACK_METRICS_PORT": str(self.worker_port),
        }
        for folder in (tmp / "api", tmp / "worker"):
            folder.mkdir()
        api = compose_command("api", {"0.0.0.0:8000": f"127.0.0.1:{api_port}"})
        assert api[api.index("--workers") + 1] == "2"
        self.api = Process("mp-api", api, self.api_env, logs)
        self.worker = celery_worker(worker_env, logs, "mp-worker")
        wait_until(lambda: _up(f"{self.api_url}/readyz"), timeout=30)

    def stop(self) -> None:
        self.worker.stop()
        self.api.stop()


@pytest.fixture
def mp_stack(
    private_env: dict[str, str], logs: Path, tmp_path: Path
) -> Iterator[MultiprocessStack]:
    stack = MultiprocessStack(private_env, logs, tmp_path)
    yield stack
    stack.stop()


def test_prefork_children_and_gunicorn_workers_are_all_counted(
    mp_stack: MultiprocessStack, simulator_process: Simulator, tmp_path: Path
) -> None:
    account = run_cli(mp_stack.api_env, "accounts", "create", "metrics")
    client = http_api(mp_stack.api_url, account["token"])
    client.put("/account-settings", {"resolved_status_id": 42}, expect=200)
    connection_id = client.connect_simulator(simulator_process.url)
    jobs = [
        client.start(client.session(connection_id, simulator_process.new_ticket()))["job_id"]
        for _ in range(6)
    ]
    assert all(client.wait_job(job)["state"] == "succeeded" for job in jobs)

    worker_metrics = f"http://127.0.0.1:{mp_stack.worker_port}/metrics"
    wait_until(lambda: _up(worker_metrics), timeout=10)
    finished = samples(worker_metrics, "writeback_jobs_finished_total")
    assert finished[(("state", "succeeded"),)] == 6
    steps = samples(worker_metrics, "writeback_step_duration_seconds_count")
    assert sum(n for labels, n in steps.items() if ("step", "post_note") in labels) == 6
    notes = samples(worker_metrics, "writeback_psa_answers_total")
    posts = (("method", "POST"), ("status", "201"), ("vendor", "connectwise"))
    assert notes[posts] == 6
    # The steps ran in more than one child, and every child's count is in the sums above.
    assert len({path.name.rsplit("_", 1)[-1] for path in (tmp_path / "worker").iterdir()}) == 2

    # Connection checks on fresh connections land on both gunicorn workers; any scrape (each
    # answered by whichever worker) reports the same total.
    check = f"{mp_stack.api_url}/api/v1/psa-connections/{connection_id}/test"
    headers = {"Authorization": f"Bearer {account['token']}", "Connection": "close"}

    def api_pids() -> set[str]:
        return {path.name.rsplit("_", 1)[-1] for path in (tmp_path / "api").iterdir()}

    # The kernel hands each new connection to either worker: most often both within 8, not
    # always, so go on (bounded) until both have answered one.
    checks = 0
    while checks < 8 or (len(api_pids()) < 2 and checks < 80):
        assert requests.post(check, headers=headers, timeout=10).json()["ok"] is True
        checks += 1
    totals = {
        sum(samples(f"{mp_stack.api_url}/metrics", "writeback_psa_answers_total").values())
        for _ in range(6)
    }
    [total] = totals
    assert total > 0 and total % checks == 0
    pids = api_pids()
    assert len(pids) == 2, pids
