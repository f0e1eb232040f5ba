"""What reaches the broker (and so Flower): task names and the job id, nothing else."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from kombu import Queue

from tests.support import Api
from writeback import bootstrap
from writeback.adapters.queue import CeleryJobQueue, create_celery_app
from writeback.domain.model import Step

pytestmark = pytest.mark.integration


def test_a_chain_message_carries_only_the_job_id_and_explicit_task_names(
    container: bootstrap.Container, api: Api
) -> None:
    queue_name = f"wb-peek-{uuid.uuid4().hex[:8]}"  # no worker consumes it
    settings = dataclasses.replace(container.settings, queue_name=queue_name)
    app = create_celery_app(settings)
    CeleryJobQueue(app).enqueue("job-123", Step.POST_NOTE)
    with app.connection_for_read() as conn:  # the same on every broker
        queue = Queue(queue_name).bind(conn.default_channel)
        try:
            message = queue.get(no_ack=True)
            assert queue.get(no_ack=True) is None  # exactly one message
        finally:
            queue.delete()
    app.close()
    args, kwargs, embed = message.decode()
    assert message.headers["task"] == "writeback.post_note"
    assert (args, kwargs) == (["job-123"], {})
    later = [(link["task"], link["args"], link["kwargs"]) for link in embed["chain"]]
    assert sorted(later) == sorted(
        [
            ("writeback.transition_status", ["job-123"], {}),
            ("writeback.verify", ["job-123"], {}),
            ("writeback.finalize", ["job-123"], {}),
        ]
    )
