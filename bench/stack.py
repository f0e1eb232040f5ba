"""A production-shaped deployment for the benchmarks: PostgreSQL, Redis, the worker and the API
as docker-compose.yml runs them, and the ConnectWise simulator, all on this machine."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
import requests
import sqlalchemy as sa
from tests.support import (
    REDIS_URL,
    Process,
    Simulator,
    celery_worker,
    compose_command,
    create_database,
    deployment_env,
    drop_database,
    free_port,
    wait_until,
)

from writeback import bootstrap
from writeback.config import load_settings
from writeback.domain.accounts import Principal
from writeback.domain.model import AccountSettings, JobKind

CREDENTIALS = {"public_key": "pub-key", "private_key": "priv-key", "client_id": "bench"}


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


class Stack:
    def __init__(self, logs: Path, concurrency: int, *, admission: bool = False) -> None:
        self.logs = logs
        self.database_url = create_database("wb_bench")
        self.queue = f"wb-bench-{uuid.uuid4().hex[:8]}"
        self.env = deployment_env(
            self.database_url,
            self.queue,
            logs / "data",
            WRITEBACK_WORKER_CONCURRENCY=str(concurrency),
            WRITEBACK_PSA_TIMEOUT="10",
            # measure the pipeline, not the tenant's budget or (unless asked) admission slots
            WRITEBACK_PSA_RATE="1000000",
            **({} if admission else {"WRITEBACK_TENANT_SLOTS": "100000"}),
        )
        sim_port, api_port = free_port(), free_port()
        self.sim = Simulator(f"http://127.0.0.1:{sim_port}")
        self.api_url = f"http://127.0.0.1:{api_port}"
        self._processes = [
            Process(
                "simulator",
                [sys.executable, "-m", "writeback_simulators.connectwise", "--port", str(sim_port)],
                self.env,
                logs,
            ),
            Process(
                "api",
                compose_command("api", {"0.0.0.0:8000": f"127.0.0.1:{api_port}"}),
                self.env,
                logs,
            ),
        ]
        try:
            wait_until(lambda: _up(f"{self.sim.url}/__sim/faults"), timeout=30)
            wait_until(lambda: _up(f"{self.api_url}/readyz"), timeout=30)
        except AssertionError:  # no close() will stop them: they would outlive the run
            for process in self._processes:
                process.stop()
            raise
        self.container = bootstrap.build(load_settings(self.env))

    @contextmanager
    def worker(
        self, name: str = "worker", app: str | None = None, extra_env: dict[str, str] | None = None
    ) -> Iterator[Process]:
        env = {**self.env, **(extra_env or {})}
        if app is None:
            process = celery_worker(env, self.logs, name, beat=True)
        else:
            args = [
                *compose_command("worker"),
                "--without-gossip",
                "--without-mingle",
                "--hostname",
                f"{name}@%h",
            ]
            args[args.index("writeback.workers.celery_app")] = app
            process = Process(name, args, env, self.logs)
            process.wait_for_log("ready.")
        try:
            yield process
        finally:
            process.stop()

    def account(self, statuses: bool = True, sim: Simulator | None = None) -> tuple[int, str, int]:
        """An account with a ConnectWise connection to the simulator (or `sim`, another site:
        another request budget): (id, token, connection)."""
        c = self.container
        issued = c.accounts.create_account(f"bench-{uuid.uuid4().hex[:6]}")
        principal = Principal(issued.account_id, issued.user_id)
        connection = c.connections.create(
            principal,
            provider="connectwise",
            site_url=(sim or self.sim).url,
            company_id="ACME",
            credentials=CREDENTIALS,
        )
        if statuses:
            with c.uow() as tx:
                tx.accounts.add_settings(AccountSettings(issued.account_id, 42, 43))
                tx.commit()
        assert connection.id is not None
        return issued.account_id, issued.token, connection.id

    def sessions(
        self, account: tuple[int, str, int], count: int, sim: Simulator | None = None
    ) -> list[int]:
        """Sessions linked to fresh tickets of the simulator (or `sim`), made before any clock
        starts."""
        account_id, _, connection_id = account
        with ThreadPoolExecutor(16) as pool:
            tickets = list(pool.map(lambda _: (sim or self.sim).new_ticket(), range(count)))
        principal = Principal(account_id, self._user(account_id))
        return [
            self.container.sessions.create(
                principal,
                session_type="chat",
                intake_type="free_text",
                intake_content={"text": "Printer offline"},
                conversation_messages=[],
                psa_connection_id=connection_id,
                psa_ticket_id=ticket,
            ).id
            or 0
            for ticket in tickets
        ]

    def _user(self, account_id: int) -> int:
        with self.container.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT min(id) FROM users WHERE account_id = :a"), {"a": account_id}
                ).scalar_one()
            )

    def post_jobs(
        self, token: str, session_ids: list[int], kind: JobKind = JobKind.RESOLVE, clients: int = 16
    ) -> None:
        document = "resolution-note" if kind is JobKind.RESOLVE else "escalation-package"
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {token}"
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=clients)
        http.mount("http://", adapter)

        def post(session_id: int) -> None:
            response = http.post(
                f"{self.api_url}/api/v1/ai-sessions/{session_id}/{document}/post",
                json={"markdown": "## Resolution\nRestarted the spooler."},
                timeout=30,
            )
            assert response.status_code == 202, response.text

        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(post, session_ids))

    def wait_finished(self, account_id: int, count: int, timeout: float = 1800) -> dict[str, int]:
        query = sa.text(
            "SELECT state, count(*) FROM writeback_jobs WHERE account_id = :a "
            "AND state IN ('succeeded', 'failed') GROUP BY state"
        )

        def finished() -> dict[str, int] | None:
            with self.container.engine.connect() as conn:
                states = {row[0]: int(row[1]) for row in conn.execute(query, {"a": account_id})}
            return states if sum(states.values()) >= count else None

        return wait_until(finished, timeout=timeout, interval=0.05)

    def sql(self, statement: str, **params: Any) -> Any:
        with self.container.engine.begin() as conn:
            return conn.execute(sa.text(statement), params)

    def close(self) -> None:
        for process in self._processes:
            process.stop()
        self.container.close()
        redis.Redis.from_url(REDIS_URL).delete(self.queue)
        drop_database(self.database_url)


def timed(action: Any) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started
