"""JobFeed adapters: Redis for deployments (versions shared by every API process, pub/sub
wake-ups for event streams), in-process for the embedded defaults."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence

import redis

from writeback.adapters.job_view import Job
from writeback.adapters.near_cache import NearCache
from writeback.domain.job_versions import JobVersion, version_of
from writeback.domain.model import JobEvent, WritebackJob

log = logging.getLogger(__name__)

# Only in-flight jobs are kept, the ones frontends poll, and not for long: a transition made
# where nothing publishes (a sweep, a bulk re-post) or while Redis was away is then shown late
# by at most this, never as a wrong final state. A final job is read from the database: one that
# is re-posted later must not keep answering "failed" from here.
IN_FLIGHT_TTL = 60


def _key(job_id: str) -> str:
    return f"writeback:job:{job_id}:version"


def _channel(job_id: str) -> str:
    return f"writeback:job:{job_id}:events"


class RedisJobFeed:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._near = NearCache(client)

    def publish(self, job: WritebackJob, events: Sequence[JobEvent]) -> None:
        version = version_of(job)
        # Four lines: account, ETag, poll hint, the body (JSON escapes its own newlines).
        body = json.dumps(Job.of(job).body(), separators=(",", ":"))
        value = f"{version.account_id}\n{version.etag}\n{version.poll_after_ms or ''}\n{body}"
        try:
            pipe = self._redis.pipeline(transaction=False)
            if version.final:
                pipe.delete(_key(job.id))
            else:
                pipe.set(_key(job.id), value, ex=IN_FLIGHT_TTL)
            pipe.publish(_channel(job.id), json.dumps([str(e.event) for e in events]))
            pipe.execute()
            self._near.drop(job.id)  # this process sees its own change at once
        except redis.RedisError as exc:  # the transition is committed; followers fall back
            log.warning("job feed: publish of job %s failed: %s", job.id, type(exc).__name__)

    def version(self, job_id: str) -> JobVersion | None:
        return self._near.get(job_id, lambda: self._read_version(job_id))

    def _read_version(self, job_id: str) -> JobVersion | None:
        try:
            raw = self._redis.get(_key(job_id))
        except redis.RedisError as exc:  # a cache: the database answers instead
            log.warning("job feed: version of job %s unreadable: %s", job_id, type(exc).__name__)
            return None
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else raw
        account_id, etag, poll_after, body = text.split("\n", 3)
        return JobVersion(int(account_id), etag, int(poll_after) if poll_after else None, body)

    def subscribe(self, job_id: str) -> RedisSubscription:
        return RedisSubscription(self._redis, _channel(job_id))


class RedisSubscription:
    def __init__(self, client: redis.Redis, channel: str) -> None:
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            self._pubsub.subscribe(channel)
        except redis.RedisError as exc:  # the stream still works, by polling the store
            log.warning("job feed: subscribe failed: %s", type(exc).__name__)
            self._pubsub = None

    def wait(self, timeout: float) -> bool:
        if self._pubsub is None:
            threading.Event().wait(timeout)
            return False
        deadline = time.monotonic() + timeout
        try:
            # None also comes back at once for the (ignored) subscribe confirmation.
            while (remaining := deadline - time.monotonic()) > 0:
                if self._pubsub.get_message(timeout=remaining) is not None:
                    return True
        except redis.RedisError:
            self.close()
        return False

    def close(self) -> None:
        if self._pubsub is not None:
            pubsub, self._pubsub = self._pubsub, None
            try:
                pubsub.close()
            except redis.RedisError:
                pass


class LocalJobFeed:
    """Wakes followers in this process only. It keeps no versions: on the embedded defaults
    the worker is another process, and a version this process cannot see change would answer
    304 for a changed job."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._generation: dict[str, int] = {}

    def publish(self, job: WritebackJob, events: Sequence[JobEvent]) -> None:
        with self._changed:
            if version_of(job).final:  # nothing follows a final job: keep the map bounded
                self._generation.pop(job.id, None)
            else:
                self._generation[job.id] = self._generation.get(job.id, 0) + 1
            self._changed.notify_all()

    def version(self, job_id: str) -> JobVersion | None:
        return None

    def subscribe(self, job_id: str) -> LocalSubscription:
        return LocalSubscription(self, job_id)


class LocalSubscription:
    def __init__(self, feed: LocalJobFeed, job_id: str) -> None:
        self._feed, self._job_id = feed, job_id
        self._seen = feed._generation.get(job_id, 0)

    def wait(self, timeout: float) -> bool:
        feed = self._feed
        with feed._changed:
            woke = feed._changed.wait_for(
                lambda: feed._generation.get(self._job_id, 0) != self._seen, timeout
            )
            self._seen = feed._generation.get(self._job_id, 0)
        return woke

    def close(self) -> None:
        """Nothing held."""
