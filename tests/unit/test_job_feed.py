"""The job's version (ETag) and poll hint, the publishes the pipeline makes after each committed
transition, the feeds that carry them, and the event stream that follows them."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import UTC, datetime

import fakeredis

from tests.support import wait_until
from tests.unit.conftest import World
from writeback.adapters.job_feed import LocalJobFeed, RedisJobFeed
from writeback.adapters.job_view import JobView
from writeback.api import streams
from writeback.domain.job_versions import job_etag, poll_after_ms, version_of
from writeback.domain.model import JobEvent, JobKind, JobState, WritebackJob

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _job(**changes: object) -> WritebackJob:
    job = WritebackJob(
        account_id=7,
        session_id=1,
        kind=JobKind.RESOLVE,
        tenant="local:7",
        created_at=AT,
        updated_at=AT,
        due_at=None,
        id="0c1e0c4e-8f51-4f43-9d2e-1b1a4c1b2a3e",
    )
    return replace(job, **changes)  # type: ignore[arg-type]


class RecordingFeed:
    def __init__(self) -> None:
        self.published: list[tuple[str, str]] = []

    def publish(self, job: WritebackJob) -> None:
        self.published.append((str(job.state), job_etag(job)))

    def version(self, job_id: str) -> None:
        return None

    def subscribe(self, job_id: str) -> LocalJobFeed:  # type: ignore[override]
        raise NotImplementedError


def test_the_etag_changes_with_what_the_api_shows_and_only_then() -> None:
    base = _job()
    assert job_etag(base) == job_etag(_job())
    # The worker holds enums and aware datetimes; a read may give strings and naive UTC.
    assert job_etag(_job(state=JobState.QUEUED)) == job_etag(_job(state="queued"))
    assert job_etag(_job(updated_at=AT.replace(tzinfo=None))) == job_etag(base)
    for change in (
        {"state": "running"},
        {"attempts": 1},
        {"step": "post_note"},
        {"updated_at": AT.replace(second=1)},
        {"error_code": "x"},
    ):
        assert job_etag(_job(**change)) != job_etag(base), change
    assert job_etag(base).startswith('"') and job_etag(base).endswith('"')


def test_only_in_flight_jobs_carry_a_poll_hint() -> None:
    assert poll_after_ms(_job(state="running")) == 1000
    assert poll_after_ms(_job(state="retrying")) == 2000
    assert poll_after_ms(_job(state="succeeded")) is None
    assert version_of(_job(state="failed")).final


def test_every_committed_transition_is_published(world: World) -> None:
    feed = RecordingFeed()
    world.feed = feed
    job_id = world.request(world.session())
    world.run(job_id)
    states = [state for state, _ in feed.published]
    assert states[0] == "queued" and states[-1] == "succeeded"
    assert "running" in states
    assert feed.published[-1][1] == job_etag(world.job(job_id))
    assert len({etag for _, etag in feed.published}) == len(feed.published)


def test_redis_feed_keeps_versions_with_their_account_as_plain_json() -> None:
    server = fakeredis.FakeServer()
    feed = RedisJobFeed(fakeredis.FakeRedis(server=server))
    job = _job(state="running")
    assert feed.version(job.id) is None
    feed.publish(job)
    known = feed.version(job.id)
    assert known is not None and replace(known, body=None) == version_of(job)
    # The body kept beside the version is the API's own answer for the job.
    assert known.body == JobView.of(job).body()
    stored = json.loads(fakeredis.FakeRedis(server=server).get(f"writeback:job:{job.id}:json"))
    assert stored == {"account_id": 7, "etag": job_etag(job), "job": JobView.of(job).body()}
    # A final job is not kept: if it is re-posted later, nothing here says "failed".
    feed.publish(replace(job, state="failed"))
    assert feed.version(job.id) is None
    server.connected = False  # Redis away: publishing never raises, versions are unknown
    feed.publish(job)
    assert feed.version(job.id) is None


def test_versions_read_once_are_served_locally_until_the_job_changes() -> None:
    server = fakeredis.FakeServer()
    feed = RedisJobFeed(fakeredis.FakeRedis(server=server))
    other = RedisJobFeed(fakeredis.FakeRedis(server=server))  # another process: the worker
    job = _job(state="queued")
    other.publish(job)
    assert feed.version(job.id) is not None  # starts this process's listener
    wait_until(lambda: feed._near._live)
    assert feed.version(job.id) == other.version(job.id)
    server.connected = False  # nothing reaches Redis: the version comes from this process
    assert feed.version(job.id) is not None
    server.connected = True
    running = replace(job, state="running", attempts=1)
    other.publish(running)
    # The job's channel drops the local copy: the next read sees the new version.
    wait_until(lambda: (v := feed.version(job.id)) is not None and v.etag == job_etag(running))


def test_one_listener_per_process_wakes_the_streams_of_the_job_that_changed() -> None:
    server = fakeredis.FakeServer()
    feed = RedisJobFeed(fakeredis.FakeRedis(server=server))
    worker = RedisJobFeed(fakeredis.FakeRedis(server=server))  # another process
    job, other_job = _job(state="queued"), _job(state="queued", id="another")
    followers = [feed.subscribe(job.id), feed.subscribe(job.id)]
    bystander = feed.subscribe(other_job.id)
    wait_until(lambda: feed._near._live)
    for wakeup in (*followers, bystander):
        wakeup.wait(0)  # streams that began before the listener are told to read once more
    assert not bystander.wait(0.01)
    worker.publish(replace(job, state="running"))
    assert all(follower.wait(5.0) for follower in followers)
    assert not bystander.wait(0.05)
    for follower in (*followers, bystander):
        follower.close()
    assert not feed._wakeups._following  # nothing kept for streams that ended
    # Streams hold no subscription of their own in Redis: the process's one pattern serves all.
    redis_client = fakeredis.FakeRedis(server=server)
    assert redis_client.pubsub_channels() == [] and redis_client.pubsub_numpat() == 1


def test_local_feed_wakes_subscribers_and_keeps_no_versions() -> None:
    feed, job = LocalJobFeed(), _job(state="running")
    subscription = feed.subscribe(job.id)
    threading.Timer(0.05, feed.publish, (job,)).start()
    assert subscription.wait(5.0)
    assert not subscription.wait(0.01)
    assert feed.version(job.id) is None


def _event(number: int, name: str) -> JobEvent:
    return JobEvent(job_id="j", at=AT, step="draft", event=name, id=number)


class Subscription:
    def __init__(self) -> None:
        self.waits: list[float] = []
        self.closed = False

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        return True

    def close(self) -> None:
        self.closed = True


def test_the_stream_sends_new_events_and_ends_at_a_final_state() -> None:
    reads = iter([([_event(1, "created")], False), ([], False), ([_event(2, "succeeded")], True)])
    asked: list[int] = []

    def read_after(last_id: int) -> tuple[list[JobEvent], bool]:
        asked.append(last_id)
        return next(reads)

    subscription = Subscription()
    text = "".join(
        streams.job_events(read_after, subscription, last_id=0, lifetime=60, poll_interval=2)
    )
    assert asked == [0, 1, 1]
    assert "id: 1\nevent: job_event" in text and "id: 2\nevent: job_event" in text
    assert text.endswith("event: end\ndata: {}\n\n")
    assert subscription.closed and subscription.waits == [2, 2]


def test_the_stream_ends_after_its_lifetime_and_resumes_from_last_event_id() -> None:
    subscription = Subscription()
    text = "".join(
        streams.job_events(
            lambda last: ([], False), subscription, last_id=5, lifetime=0, poll_interval=2
        )
    )
    assert "event: end" not in text and subscription.closed
    assert streams.last_event_id("17") == 17
    assert streams.last_event_id("x") == streams.last_event_id(None) == 0
    assert streams.last_event_id("9" * 30) == 0
