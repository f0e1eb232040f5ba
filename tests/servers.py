"""Private PostgreSQL and Redis servers on free ports, for tests that stop and restart them.

The machine's shared servers are never touched: each context manager starts its own server in a
temporary directory, yields a handle with its `url` and `stop()` / `start()` (same port, same
data), and removes everything on exit.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import free_port, wait_until


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise AssertionError(f"no {name} under /usr/lib/postgresql/*/bin")
    return found[-1]  # the newest major version


def _as_owner(args: list[str], owner: str | None) -> list[str]:
    """PostgreSQL refuses to run as root: run its programs as the `postgres` system user then."""
    return ["runuser", "-u", owner, "--", *args] if owner else args


class PrivatePostgres:
    """A PostgreSQL cluster of its own (trust auth, user postgres) on 127.0.0.1:`port`."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.data = root / "pgdata"
        self._log = root / "postgres.log"
        self._owner = "postgres" if os.geteuid() == 0 else None
        if self._owner:
            account = pwd.getpwnam(self._owner)
            os.chown(root, account.pw_uid, account.pw_gid)
        self._run(
            _pg_bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            _as_owner(list(args), self._owner), capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise AssertionError(f"{args[0]} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self._log),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """`fast` disconnects every client (a restart); `immediate` is a crash."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        done = subprocess.run(
            [_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
        )
        return done.returncode == 0


class PrivateRedis:
    """A redis-server of its own on 127.0.0.1:`port`, persisted as docker-compose.yml runs it
    (append-only file), so a restart keeps what a production restart keeps."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self._dir = root
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self._dir),
            "--appendonly",
            "yes",
            "--save",
            "",
        ]
        log = (self._dir / "redis.log").open("ab")
        self._process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_until(self.running, timeout=20, interval=0.05)

    def stop(self) -> None:
        """SIGTERM: redis flushes its append-only file and exits, as on a restart."""
        if self._process is None:
            return
        self._process.terminate()
        self._process.wait(timeout=30)
        self._process = None

    def running(self) -> bool:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
        )
        return done.stdout.strip() == "PONG"


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    root = Path(tempfile.mkdtemp(prefix="wb-pg-"))
    server = PrivatePostgres(root)
    server.start()
    try:
        yield server
    finally:
        if server.running():
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    root = Path(tempfile.mkdtemp(prefix="wb-redis-"))
    server = PrivateRedis(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
