"""Pooled connections are pinged only after sitting idle: a busy process pays no round trip."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.exc import DisconnectionError

from writeback.adapters.db.engine import PING_AFTER_IDLE, _note_idle, _ping_if_idle


class Dialect:
    def __init__(self, alive: bool = True) -> None:
        self.alive, self.pings = alive, 0

    def do_ping(self, _dbapi_connection: Any) -> bool:
        self.pings += 1
        if not self.alive:
            raise OSError("server closed the connection unexpectedly")
        return True


def _record(idle_for: float | None) -> SimpleNamespace:
    record = SimpleNamespace(info={})
    if idle_for is not None:
        _note_idle(None, record)
        record.info["idle_since"] -= idle_for
    return record


@pytest.mark.parametrize(("idle_for", "pinged"), [(None, 0), (0.01, 0), (PING_AFTER_IDLE + 1, 1)])
def test_only_a_connection_idle_for_a_while_is_pinged(idle_for: float | None, pinged: int) -> None:
    dialect = Dialect()
    _ping_if_idle(dialect, object(), _record(idle_for), None)  # type: ignore[arg-type]
    assert dialect.pings == pinged


def test_a_dead_idle_connection_is_replaced_by_the_pool() -> None:
    # DisconnectionError from a checkout handler makes the pool discard it and connect anew.
    with pytest.raises(DisconnectionError, match="pooled connection is gone"):
        _ping_if_idle(Dialect(alive=False), object(), _record(60.0), None)  # type: ignore[arg-type]
