"""Server-Sent Events for one job: its audit events as they are committed, until a final
state or the connection's lifetime. The database is the record; the feed only wakes the
stream early, so a missed publish delays an event by at most the poll interval."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence

from writeback.api.responses import Event
from writeback.domain.model import JobEvent
from writeback.domain.ports import Subscription

EVENT_STREAM = "text/event-stream"
# Events after `last_id`, and whether the job is final.
ReadAfter = Callable[[int], tuple[Sequence[JobEvent], bool]]


def job_events(
    read_after: ReadAfter,
    subscription: Subscription,
    *,
    last_id: int,
    lifetime: float,
    poll_interval: float,
) -> Iterator[str]:
    deadline = time.monotonic() + lifetime
    try:
        yield "retry: 1000\n\n"
        while True:
            events, final = read_after(last_id)
            for event in events:
                assert event.id is not None  # committed events have ids
                last_id = event.id
                data = json.dumps(Event.model_validate(event).body())
                yield f"id: {event.id}\nevent: job_event\ndata: {data}\n\n"
            if final:
                yield "event: end\ndata: {}\n\n"
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return  # bounded lifetime: the client reconnects with Last-Event-ID
            if not events:
                yield ": waiting\n\n"  # a write to a gone client ends the stream here
            subscription.wait(min(poll_interval, remaining))
    finally:
        subscription.close()


def last_event_id(header: str | None) -> int:
    """The Last-Event-ID a reconnecting client sends; anything else starts from the top."""
    if header and header.strip().isdigit() and len(header.strip()) < 19:
        return int(header.strip())
    return 0
