"""What reaches the broker (and so Flower): task names and the job id, nothing else."""

from __future__ import annotations

import uuid

import pytest
import redis
from kombu import Queue

from tests.servers import PrivateRedis
from tests.support import Api, wait_until
from writeback import bootstrap
from writeback.adapters.queue import BrokerEpoch, CeleryJobQueue, create_celery_app
from writeback.domain.model import Step

pytestmark = pytest.mark.integration


def test_a_step_message_carries_only_the_job_id_under_its_task_name_and_message_id(
    container: bootstrap.Container, api: Api
) -> None:
    queue_name = f"wb-peek-{uuid.uuid4().hex[:8]}"  # no worker consumes it
    settings = container.settings.model_copy(update={"queue_name": queue_name})
    app = create_celery_app(settings)
    queue = CeleryJobQueue(app)
    message_id = queue.new_message_id()
    queue.enqueue("job-123", Step.POST_NOTE, message_id)
    with app.connection_for_read() as conn:  # the same on every broker
        peek = Queue(queue_name).bind(conn.default_channel)
        try:
            message = peek.get(no_ack=True)
            assert peek.get(no_ack=True) is None  # exactly one message
        finally:
            peek.delete()
    app.close()
    args, kwargs, embed = message.decode()
    assert message.headers["task"] == "writeback.post_note"
    assert message.headers["id"] == message_id  # the id the job row waits for
    assert (args, kwargs) == (["job-123"], {})
    assert embed["chain"] is None  # each step sends the next after its commit
    assert not queue.lost(message_id)


def test_a_message_sent_before_the_broker_lost_its_data_is_known_lost(
    container: bootstrap.Container,
) -> None:
    # A private Redis, restarted for real: the machine's carries the epoch of every stack running.
    with PrivateRedis() as server:
        client = redis.Redis.from_url(server.url)
        queue = CeleryJobQueue(create_celery_app(container.settings), BrokerEpoch(client, ttl=0.3))
        before = queue.new_message_id()
        server.restart()  # it keeps nothing on disk: the epoch is gone with the messages
        assert not queue.lost(before)  # each process reads the epoch at most once per `ttl`
        wait_until(lambda: queue.lost(before), timeout=5, interval=0.05)
        assert not queue.lost(queue.new_message_id())
        client.close()
