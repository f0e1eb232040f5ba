"""Private PostgreSQL and Redis servers for tests that stop and restart them: each on a free
loopback port, in a temporary directory, never the machine's shared instances.

    with PrivatePostgres() as pg:
        url = pg.create_database("wb_fault")   # migrated, ready for DATABASE_URL
        pg.stop()                              # clients now get connection refused
        pg.start()                             # same port, same data

    with PrivateRedis() as r:
        r.url                                  # redis://127.0.0.1:PORT/0
        r.restart()

Both run as the current user; PostgreSQL refuses to run as root, so under root the server
runs as `postgres` (the Debian packages' user) through `runuser`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TypeVar

import redis

from tests.support import create_database, free_port

S = TypeVar("S", bound="_Server")


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class _Server:
    """Started on entering, stopped (and its files removed) on leaving."""

    directory: Path

    def __enter__(self: S) -> S:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prepare()
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def prepare(self) -> None:
        """Once, before the first start."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        self.stop()
        self.start()


class PrivatePostgres(_Server):
    def __init__(self, directory: Path | None = None) -> None:
        # Under root the server runs as `postgres`, which cannot enter pytest's private
        # temporary directories: its own directory lives directly under the system's.
        self.directory = directory or Path(tempfile.mkdtemp(prefix="wb-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.admin_url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def prepare(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        subprocess.run(
            _as_postgres(
                ["initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory}"
        subprocess.run(
            _as_postgres(
                [
                    "pg_ctl",
                    "-D",
                    str(self.data),
                    "-o",
                    options,
                    "-l",
                    str(self.directory / "log"),
                    "-w",
                    "-t",
                    "30",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, as in an outage."""
        subprocess.run(
            _as_postgres(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"]),
            check=False,
            capture_output=True,
        )

    def create_database(self, prefix: str) -> str:
        return create_database(prefix, self.admin_url)


class PrivateRedis(_Server):
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or Path(tempfile.mkdtemp(prefix="wb-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None
