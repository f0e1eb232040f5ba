"""Engines and session factories, built by the composition root (never at import time)."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker


def create_engine(
    url: str, pool_size: int = 5, read_only: bool = False, max_overflow: int = 10, **kwargs: Any
) -> sa.Engine:
    """`pool_size`: at least the threads that query at once (a worker's concurrency).
    `read_only`: autocommit connections for single-statement reads (the status a frontend
    polls): no BEGIN/ROLLBACK round trips, half the database time of a read."""
    if url.startswith("sqlite"):
        # The embedded default: several threads and processes share one file.
        engine = sa.create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if read_only:
        kwargs["isolation_level"] = "AUTOCOMMIT"
    engine = sa.create_engine(url, pool_size=pool_size, max_overflow=max_overflow, **kwargs)
    event.listen(engine.pool, "checkin", _note_idle)
    event.listen(engine.pool, "checkout", partial(_ping_if_idle, engine.dialect))
    return engine


# SQLAlchemy's pool_pre_ping pings on every checkout: a round trip per transaction, two per
# pipeline step. A connection back in use within a second cannot have outlived a PostgreSQL
# restart, so only one that sat idle longer is pinged; a dead one is replaced at once.
PING_AFTER_IDLE = 1.0


def _note_idle(_dbapi_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dialect: Dialect, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    idle_since = record.info.get("idle_since")
    if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE:
        return
    try:
        dialect.do_ping(dbapi_connection)
    except Exception as exc:  # the pool discards this connection and checks out another
        raise DisconnectionError(f"pooled connection is gone: {exc}") from exc


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def session_factory(engine: sa.Engine) -> sessionmaker[Session]:
    # Entities stay readable after commit: services return them to the API layer.
    return sessionmaker(bind=engine, expire_on_commit=False)
