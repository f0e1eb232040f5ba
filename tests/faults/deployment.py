"""A deployment built from the outside, as an operator builds it: its environment (what must be
set, every other WRITEBACK_* setting at its default unless asked), a fresh database whose schema
is made by the CLI (`writeback db upgrade`), not by importing our code, and simulator processes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import requests
from cryptography.fernet import Fernet

from tests.support import Process, Simulator, empty_database, free_port, wait_until


def bare_env(database_url: str, broker_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """Database, broker, a queue of its own, a key, the data folder and private PSA hosts (the
    simulators listen on loopback); `extra` adds or overrides settings. The data folder is
    made, as an operator (or the image) makes it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WRITEBACK_", "DATABASE_URL", "CELERY_", "ANTHROPIC_", "FLOWER_"))
    }
    return {
        **inherited,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "WRITEBACK_QUEUE": f"wb-faults-{uuid.uuid4().hex[:8]}",
        "WRITEBACK_SECRET_KEYS": Fernet.generate_key().decode(),
        "WRITEBACK_DATA_DIR": str(data_dir),
        "WRITEBACK_PSA_ALLOW_PRIVATE_HOSTS": "1",
        "WRITEBACK_LOG_FORMAT": "json",
        **extra,
    }


def new_database(admin_url: str) -> str:
    """A fresh database on the server of `admin_url`, migrated by `writeback db upgrade`."""
    url = empty_database("wb_faults", admin_url)
    subprocess.run(
        [sys.executable, "-m", "writeback", "db", "upgrade"],
        env={**os.environ, "DATABASE_URL": url},
        check=True,
        capture_output=True,
        timeout=120,
    )
    return url


def start_simulator(vendor: str, logs: Path, name: str | None = None) -> tuple[Process, Simulator]:
    """`python -m writeback_simulators.<vendor>` on a free port, once it answers."""
    port = free_port()
    process = Process(
        name or f"{vendor}-simulator",
        [sys.executable, "-m", f"writeback_simulators.{vendor}", "--port", str(port)],
        dict(os.environ),
        logs,
    )
    sim = Simulator(f"http://127.0.0.1:{port}")

    def up() -> bool:
        try:
            return requests.get(f"{sim.url}/__sim/faults", timeout=1).ok
        except requests.RequestException:
            return False

    wait_until(up, timeout=30)
    return process, sim
