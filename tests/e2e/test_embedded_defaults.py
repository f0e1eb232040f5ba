"""The newcomer's path: no servers, no settings. `writeback dev` runs API, worker and the
simulator on SQLite and a filesystem broker; `writeback demo` resolves and escalates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support import Process, free_port, wait_until

pytestmark = pytest.mark.e2e


def _bare_environment() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WRITEBACK_", "DATABASE_URL", "CELERY_", "ANTHROPIC_"))
    }


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_dev_and_demo_work_on_embedded_defaults(tmp_path: Path) -> None:
    env = _bare_environment()
    api_port, sim_port = free_port(), free_port()
    dev = Process(
        "dev",
        [
            sys.executable,
            "-m",
            "writeback",
            "dev",
            "--port",
            str(api_port),
            "--sim-port",
            str(sim_port),
        ],
        env,
        tmp_path,
        cwd=tmp_path,
    )
    try:
        wait_until(lambda: _up(f"http://127.0.0.1:{api_port}/healthz"), timeout=60)
        demo = subprocess.run(
            [
                sys.executable,
                "-m",
                "writeback",
                "demo",
                "--api",
                f"http://127.0.0.1:{api_port}",
                "--sim",
                f"http://127.0.0.1:{sim_port}",
            ],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        dev.stop()
    assert demo.returncode == 0, demo.stderr + demo.stdout + dev.log[-3000:]
    assert "'outcome': 'resolved'" in demo.stdout
    assert "'outcome': 'escalated'" in demo.stdout
    for event in ("note_posted", "status_changed", "status_verified", "succeeded"):
        assert demo.stdout.count(event) >= 2  # each job's steps shown as they happen
    data = tmp_path / ".writeback"
    assert (data / "writeback.db").exists() and (data / "secret.key").exists()
    assert (data / "broker").is_dir()
