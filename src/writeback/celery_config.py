"""Lowercase Celery settings, derived from our Settings (which come from the environment).

No app object here: the producer (API) and the worker each build theirs from these settings.
"""

from __future__ import annotations

from typing import Any

from writeback.config import Settings

SWEEP_TASK = "writeback.sweep"


def build(settings: Settings) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        # The job row is the truth; Celery results would only expire and mislead.
        "task_ignore_result": True,
        "result_backend": None,
        # At-least-once: a task whose worker died runs again (every step is safe to run twice).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # Flower sees tasks only with these events on.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        # Steps wait on PSA and LLM HTTP calls: threads keep many in flight on 2 cores.
        "worker_pool": settings.worker_pool,
        "worker_concurrency": settings.worker_concurrency,
        "task_default_queue": settings.queue_name,
        "beat_schedule": {
            "sweep": {
                "task": SWEEP_TASK,
                "schedule": settings.sweep_interval,
                # A tick nobody ran in time is replaced by the next one: ticks never pile up
                # behind a stopped worker.
                "options": {"expires": settings.sweep_interval},
            }
        },
        "beat_schedule_filename": str(settings.data_dir / "celerybeat-schedule"),
    }
    if settings.uses_filesystem_broker:
        queue_dir = settings.data_dir / "broker" / "queue"
        processed_dir = settings.data_dir / "broker" / "processed"
        for folder in (queue_dir, processed_dir):
            folder.mkdir(parents=True, exist_ok=True)
        conf["broker_transport_options"] = {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "processed_folder": str(processed_dir),
            "store_processed": False,
            "polling_interval": 0.1,
        }
    else:
        # Any countdown we hand the broker stays well under this (checked in config).
        conf["broker_transport_options"] = {"visibility_timeout": settings.visibility_timeout}
    return conf
