"""Lowercase Celery settings, derived from our Settings (which come from the environment).

No app object here: the producer (API) and the worker each build theirs from these settings.
"""

from __future__ import annotations

from typing import Any

from kombu import Exchange, Queue

from writeback.config import Settings

SWEEP_TASK = "writeback.sweep"
# Beat runs the sweep itself (workers/beat.py): no backlog of steps can starve it.
SWEEPING_SCHEDULER = "writeback.workers.beat:SweepingScheduler"


def build(settings: Settings) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        # The job row is the truth; Celery results would only expire and mislead.
        "task_ignore_result": True,
        "result_backend": None,
        # A message is acknowledged when its step ends: a worker killed with messages it had
        # taken gives them back (RabbitMQ at once, Redis after the visibility timeout), and
        # a second delivery is harmless, since the claim names the one message the job waits
        # for. A running step's worker that dies is recovered by the step's lease.
        "task_acks_late": True,
        "worker_prefetch_multiplier": 1,
        # Flower sees tasks only with these events on.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        # Steps wait on PSA and LLM HTTP calls: threads keep many in flight on 2 cores.
        "worker_pool": settings.worker_pool,
        "worker_concurrency": settings.worker_concurrency,
        "task_default_queue": settings.queue_name,
        "beat_scheduler": SWEEPING_SCHEDULER,
        "beat_schedule": {"sweep": {"task": SWEEP_TASK, "schedule": settings.sweep_interval}},
        "beat_schedule_filename": str(settings.data_dir / "celerybeat-schedule"),
    }
    conf.update(broker_options(settings))
    return conf


def broker_options(settings: Settings) -> dict[str, Any]:
    """What differs per broker: the filesystem default, RabbitMQ, or Redis."""
    if settings.uses_filesystem_broker:
        return _filesystem_options(settings)
    if settings.broker_url.startswith(("amqp://", "amqps://", "pyamqp://")):
        return _amqp_options(settings)
    # Redis gives back a message not acknowledged within the visibility timeout (a killed
    # worker's, or a running step's copy, which its claim then skips). Workers take a message
    # only when a thread is free: none waits in a worker that could die with it.
    return {
        "broker_transport_options": {"visibility_timeout": settings.visibility_timeout},
        "worker_disable_prefetch": True,
    }


def _filesystem_options(settings: Settings) -> dict[str, Any]:
    queue_dir = settings.data_dir / "broker" / "queue"
    processed_dir = settings.data_dir / "broker" / "processed"
    for folder in (queue_dir, processed_dir):
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "broker_transport_options": {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "processed_folder": str(processed_dir),
            "store_processed": False,
            "polling_interval": 0.1,
        }
    }


def _amqp_options(settings: Settings) -> dict[str, Any]:
    """RabbitMQ: one durable classic queue, persistent messages, publisher confirms.

    Classic rather than quorum: a countdown on a quorum queue needs Celery's native delayed
    delivery (topic exchanges, whole seconds) and per-consumer QoS, and quorum queues pay off
    only with three or more nodes (docs/brokers.md). RabbitMQ's consumer_timeout, set on the
    server, bounds how long a delivery may stay unacked (deploy/rabbitmq/rabbitmq.conf)."""
    name = settings.queue_name
    exchange = Exchange(name, type="direct", durable=True)
    return {
        "task_queues": (Queue(name, exchange, routing_key=name, durable=True),),
        "task_default_exchange": name,
        "task_default_routing_key": name,
        "task_default_delivery_mode": "persistent",
        # The API's enqueue returns only once the broker has the message.
        "broker_transport_options": {"confirm_publish": True},
    }
