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
from writeback.adapters.metrics import check_worker_metrics
from writeback.adapters.queue import create_celery_app
from writeback.config import load_settings

settings = load_settings()
app = create_celery_app(settings, include=("writeback.workers.tasks",))


@signals.worker_ready.connect
def _serve_metrics(**_: Any) -> None:
    """Step durations and finished jobs, scraped from each worker at WRITEBACK_METRICS_PORT."""
    if settings.metrics_port:
        container = bootstrap.for_this_process(app)
        registry = container.metrics.exposition_registry()
        start_http_server(settings.metrics_port, registry=registry)


@signals.worker_init.connect
def _check_metrics(sender: Any = None, **_: Any) -> None:
    """Before any child is forked: metrics that would count one child only are refused."""
    pool = getattr(sender, "pool_cls", None) or settings.worker_pool  # `-P` wins over settings
    name = pool if isinstance(pool, str) else pool.__module__.rsplit(".", 1)[-1]
    check_worker_metrics(name, settings.metrics_port)


@signals.setup_logging.connect
def _configure_logging(**_: Any) -> None:
    """Our format (JSON in production) instead of Celery's own."""
    configure_logging(settings.log_format, settings.log_level)
