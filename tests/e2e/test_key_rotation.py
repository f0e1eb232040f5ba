"""Retiring a credential key, as the README's procedure does it: key A in use; restart with B
first; `writeback keys rotate` beside the running processes; restart with B alone."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from tests.e2e.conftest import WRITEBACK, Stack, _up, http_api, run_cli
from tests.support import Api, Process, Simulator, compose_command, free_port, wait_until
from writeback.adapters.crypto import FernetSealer

pytestmark = pytest.mark.e2e


def rotate(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [*WRITEBACK, "keys", "rotate", "--batch-size", "1", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, json.loads(done.stdout)


def resolve(client: Api, simulator: Simulator, connection_id: int) -> dict[str, Any]:
    ticket_id = simulator.new_ticket()
    job = client.wait_job(client.start(client.session(connection_id, ticket_id))["job_id"])
    assert simulator.ticket(ticket_id)["status"]["id"] == 42
    return job


def test_old_key_is_retired_after_rotation_and_everything_still_works(
    private_env: dict[str, str], simulator_process: Simulator, logs: Path
) -> None:
    key_a, key_b = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with_keys = lambda keys: {**private_env, "WRITEBACK_SECRET_KEYS": keys}  # noqa: E731

    # Key A: only the API is needed to configure the connections.
    port = free_port()
    api = compose_command("api", {"0.0.0.0:8000": f"127.0.0.1:{port}"})
    process = Process("keys-a-api", api, with_keys(key_a), logs)
    try:
        wait_until(lambda: _up(f"http://127.0.0.1:{port}/readyz"), timeout=30)
        account = run_cli(with_keys(key_a), "accounts", "create", "rotation")
        client = http_api(f"http://127.0.0.1:{port}", account["token"])
        client.put("/account-settings", {"resolved_status_id": 42}, expect=200)
        connection_id = client.connect_simulator(simulator_process.url)
        lost_id = client.connect_simulator(simulator_process.url)
    finally:
        process.stop()
    # A credential sealed with a key nobody has any more: reported by id, never fatal.
    engine = sa.create_engine(private_env["DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE psa_connections SET credentials_encrypted = :c WHERE id = :id"),
            {"c": FernetSealer([Fernet.generate_key().decode()]).seal({"x": "y"}), "id": lost_id},
        )
    engine.dispose()

    stack = Stack(with_keys(f"{key_b},{key_a}"), logs, "keys-ba")
    try:
        assert rotate(stack.env, "--dry-run") == (
            1,
            {
                "resealed": 1,
                "already_current": 0,
                "unreadable": 1,
                "changed_meanwhile": 0,
                "unreadable_connection_ids": [lost_id],
                "dry_run": True,
            },
        )
        code, summary = rotate(stack.env)
        assert (code, summary["resealed"], summary["unreadable_connection_ids"]) == (
            1,
            1,
            [lost_id],
        )
        # Idempotent, and the running processes (B first, A still known) never noticed.
        _, again = rotate(stack.env)
        assert (again["resealed"], again["already_current"]) == (0, 1)
        client = http_api(stack.url, account["token"])
        assert resolve(client, simulator_process, connection_id)["state"] == "succeeded"
    finally:
        stack.stop()

    stack = Stack(with_keys(key_b), logs, "keys-b")
    try:
        client = http_api(stack.url, account["token"])
        assert resolve(client, simulator_process, connection_id)["state"] == "succeeded"
        assert client.post(f"/psa-connections/{connection_id}/test", expect=200)["ok"] is True
    finally:
        stack.stop()
