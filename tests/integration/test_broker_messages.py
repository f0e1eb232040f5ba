"""What reaches the broker (and so Flower): task names and the job id, nothing else."""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid

import pytest
import redis

from tests.support import REDIS_URL, Api
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
    client = redis.Redis.from_url(REDIS_URL)
    try:
        [raw] = client.lrange(queue_name, 0, -1)
    finally:
        client.delete(queue_name)
        app.close()
    message = json.loads(raw)
    args, kwargs, embed = json.loads(base64.b64decode(message["body"]))
    assert message["headers"]["task"] == "writeback.post_note"
    assert (args, kwargs) == (["job-123"], {})
    later = [(link["task"], link["args"], link["kwargs"]) for link in embed["chain"]]
    assert sorted(later) == sorted(
        [
            ("writeback.transition_status", ["job-123"], {}),
            ("writeback.verify", ["job-123"], {}),
            ("writeback.finalize", ["job-123"], {}),
        ]
    )
