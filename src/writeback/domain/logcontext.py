"""Fields every log line of a job carries (job_id, step, session_id, account_id), kept in a
context variable so any logger below the step picks them up without passing them around."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

# Read-only mappings: a default shared by every context must never be mutated.
_fields: ContextVar[Mapping[str, object]] = ContextVar(
    "writeback_log_fields", default=MappingProxyType({})
)


@contextmanager
def bound(**fields: object) -> Iterator[None]:
    """Add fields for the duration of the block (and whatever `add` puts in meanwhile)."""
    token = _fields.set(MappingProxyType({**_fields.get(), **fields}))
    try:
        yield
    finally:
        _fields.reset(token)


def add(**fields: object) -> None:
    """Add fields learned inside a `bound` block; they end with it."""
    _fields.set(MappingProxyType({**_fields.get(), **fields}))


def current() -> Mapping[str, object]:
    return _fields.get()
