"""Engines and session factories, built by the composition root (never at import time)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
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
    return sa.create_engine(
        url, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow, **kwargs
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def session_factory(engine: sa.Engine) -> sessionmaker[Session]:
    # Entities stay readable after commit: services return them to the API layer.
    return sessionmaker(bind=engine, expire_on_commit=False)
