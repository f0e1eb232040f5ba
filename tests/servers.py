"""Private PostgreSQL and Redis servers for tests that stop and restart them: each on a free
loopback port, in a temporary directory, never the machine's shared instances.

    with PrivatePostgres() as pg:
        pg.admin_url                           # postgresql+psycopg2://postgres@127.0.0.1:PORT/postgres
        pg.stop()                              # clients now get connection refused
        pg.start()                             # same port, same data

    with PrivateRedis() as r:
        r.url                                  # redis://127.0.0.1:PORT/0
        r.restart()

The interface is the one of the API-outage tests' servers (branch issue12), so either copy
serves both suites. Redis persists as docker-compose.yml runs it (append-only file), so a
restart keeps what a production restart keeps. PostgreSQL refuses to run as root, so under root
its programs run as `postgres` (the Debian packages' user) through `runuser`.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TypeVar

from tests.support import free_port, wait_until

S = TypeVar("S", bound="_Server")


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise AssertionError(f"no {name} under /usr/lib/postgresql/*/bin")
    return found[-1]  # the newest major version


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


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
    """A cluster of its own (trust auth, user postgres)."""

    def __init__(self, directory: Path | None = None) -> None:
        # The `postgres` user cannot enter pytest's private temporary directories.
        self.directory = directory or Path(tempfile.mkdtemp(prefix="wb-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.admin_url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        done = subprocess.run(_as_postgres(list(args)), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise AssertionError(f"{args[0]} failed: {done.stdout}{done.stderr}")

    def prepare(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        initdb = [_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"]
        self._run(*initdb, "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.directory / "log")
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", log, "-o", options, "-w", "start")

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, as in an outage."""
        if (self.data / "postmaster.pid").exists():
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")


class PrivateRedis(_Server):
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or Path(tempfile.mkdtemp(prefix="wb-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        persisted = ["--dir", str(self.directory), "--appendonly", "yes", "--save", ""]
        with (self.directory / "log").open("ab") as log:
            self._process = subprocess.Popen([*args, *persisted], stdout=log, stderr=log)
        wait_until(self._answers, timeout=20)

    def _answers(self) -> bool:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
        )
        return done.stdout.strip() == "PONG"

    def stop(self) -> None:
        """SIGTERM: redis flushes its append-only file and exits, as on a restart."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=30)
        self._process = None
