"""Worker, beat and Flower entry point: `celery -A writeback.workers.celery_app ...`.

Celery finds the app as a module attribute, so this entry module (and nothing imported by
others) builds it: the object is lazy and opens no connection until the worker starts.
"""

from __future__ import annotations

from typing import Any

from celery import signals
from prometheus_client import start_http_server

from writeback import bootstrap
from writeback.adapters.logs import configure_logging
from writeback.adapters.queue import create_celery_app
from writeback.config import load_settings

settings = load_settings()
app = create_celery_app(settings, include=("writeback.workers.tasks",))


@signals.worker_ready.connect
def _serve_metrics(**_: Any) -> None:
    """Step durations and finished jobs, scraped from each worker at WRITEBACK_METRICS_PORT."""
    if settings.metrics_port:
        container = bootstrap.for_this_process(app)
        start_http_server(settings.metrics_port, registry=container.metrics.registry)


@signals.setup_logging.connect
def _configure_logging(**_: Any) -> None:
    """Our format (JSON in production) instead of Celery's own."""
    configure_logging(settings.log_format, settings.log_level)
