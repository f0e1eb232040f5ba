"""The brokers the integration and end-to-end suites run on: WRITEBACK_TEST_BROKERS=redis,amqp
(`make test` sets both; a bare `pytest` uses Redis). Each run gets a private RabbitMQ vhost;
on Redis, the suites' unique queue names keep runs apart."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support import REDIS_URL

AMQP_URL = os.environ.get("WRITEBACK_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672")
KNOWN = ("redis", "amqp")


def selected_brokers() -> list[str]:
    chosen = [b.strip() for b in os.environ.get("WRITEBACK_TEST_BROKERS", "redis").split(",")]
    unknown = set(chosen) - set(KNOWN)
    if unknown:
        raise ValueError(f"WRITEBACK_TEST_BROKERS: unknown {sorted(unknown)}; known: {KNOWN}")
    return [b for b in chosen if b]


def _rabbitmqctl(*args: str) -> bool:
    try:
        done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@contextmanager
def private_broker(kind: str) -> Iterator[str]:
    """The broker URL for one run; a vhost it made is removed afterwards (queues on Redis are
    removed by the suite that named them)."""
    if kind == "redis":
        yield REDIS_URL
        return
    vhost = f"wb-test-{uuid.uuid4().hex[:10]}"
    # Without rights to rabbitmqctl, the default vhost with the run's unique queue name.
    private = _rabbitmqctl("add_vhost", vhost) and _rabbitmqctl(
        "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"
    )
    try:
        yield f"{AMQP_URL}/{vhost}" if private else f"{AMQP_URL}/"
    finally:
        if private:
            _rabbitmqctl("delete_vhost", vhost)
