"""The composition root: the one place that reads settings and builds engines, clients and
services. Nothing here runs at import time; each process builds its own container after fork."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from functools import partial

import redis
import sqlalchemy as sa
from celery import Celery

from writeback.adapters.crypto import FernetSealer, load_or_create_key_file
from writeback.adapters.db.engine import create_engine, session_factory
from writeback.adapters.db.orm import start_mappers
from writeback.adapters.db.repositories import SqlAlchemyUnitOfWork
from writeback.adapters.job_feed import LocalJobFeed, RedisJobFeed
from writeback.adapters.llm.anthropic_drafter import AnthropicDrafter
from writeback.adapters.llm.offline import OfflineDrafter
from writeback.adapters.metrics import WorkerMetrics
from writeback.adapters.psa.budget import (
    DEFAULT_RATES,
    Bucket,
    LocalBucket,
    Rate,
    RedisBucket,
    RequestBudget,
)
from writeback.adapters.psa.http import HttpClient
from writeback.adapters.psa.registry import ProviderRegistry, default_specs
from writeback.adapters.queue import CeleryJobQueue, create_celery_app
from writeback.config import Settings, load_settings
from writeback.domain.drafting import Drafting, DraftPolicy
from writeback.domain.model import utcnow
from writeback.domain.pipeline import WritebackPipeline
from writeback.domain.ports import Drafter, JobFeed, UnitOfWorkFactory
from writeback.domain.redaction import Redactor
from writeback.domain.status_targets import StatusCatalog


@dataclass
class Container:
    settings: Settings
    engine: sa.Engine
    read_engine: sa.Engine
    uow: UnitOfWorkFactory
    # Reads that need no transaction (status polling, auth): autocommit, fewer round trips.
    read_uow: UnitOfWorkFactory
    sealer: FernetSealer
    registry: ProviderRegistry
    celery: Celery
    queue: CeleryJobQueue
    drafting: Drafting
    metrics: WorkerMetrics
    statuses: StatusCatalog
    feed: JobFeed

    def close(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()

    def pipeline(self) -> WritebackPipeline:
        return WritebackPipeline(
            uow=self.uow,
            registry=self.registry,
            drafting=self.drafting,
            statuses=self.statuses,
            policy=self.settings.retry,
            clock=utcnow,
            sleep=time.sleep,
            feed=self.feed,
        )


def build(
    settings: Settings | None = None,
    *,
    celery_app: Celery | None = None,
    db_connections: int | None = None,
) -> Container:
    """`db_connections`: a hard cap per engine (the API: its threads then queue for a
    connection instead of opening more than PostgreSQL allows)."""
    settings = settings or load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    start_mappers()
    capped = {"pool_size": db_connections, "max_overflow": 0} if db_connections else {}
    engine = create_engine(
        settings.database_url, **(capped or {"pool_size": max(5, settings.worker_concurrency)})
    )
    read_engine = (
        engine
        if settings.database_url.startswith("sqlite")
        else create_engine(settings.database_url, read_only=True, **capped)
    )
    keys = settings.secret_keys or (load_or_create_key_file(settings.secret_key_file),)
    sealer = FernetSealer(keys)
    registry = ProviderRegistry(
        default_specs(cw_process_notifications=settings.cw_process_notifications),
        sealer=sealer,
        http=HttpClient(settings.psa_timeout),
        budget=_budget(settings),
        allow_private_hosts=settings.allow_private_psa_hosts,
    )
    celery = celery_app or create_celery_app(settings)
    return Container(
        settings=settings,
        engine=engine,
        read_engine=read_engine,
        uow=partial(SqlAlchemyUnitOfWork, session_factory(engine)),
        read_uow=partial(SqlAlchemyUnitOfWork, session_factory(read_engine)),
        sealer=sealer,
        registry=registry,
        celery=celery,
        queue=CeleryJobQueue(celery),
        drafting=Drafting(
            drafter=_drafter(settings),
            redactor=Redactor(settings.redact_patterns),
            policy=DraftPolicy(settings.draft_max_chars, settings.draft_link_hosts),
        ),
        metrics=WorkerMetrics(),
        statuses=StatusCatalog(utcnow),
        feed=_feed(settings),
    )


def _feed(settings: Settings) -> JobFeed:
    """Through Redis when the broker is Redis (every API process sees the worker's
    versions); in-process otherwise."""
    if _is_redis(settings.broker_url):
        return RedisJobFeed(redis.Redis.from_url(settings.broker_url, socket_timeout=5))
    return LocalJobFeed()


def _is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://"))


def _budget(settings: Settings) -> RequestBudget:
    """Shared by all workers through Redis when the broker is Redis; per process otherwise."""
    rates = {
        name: Rate(settings.psa_rate or rate.per_second, settings.psa_burst or rate.burst)
        for name, rate in DEFAULT_RATES.items()
    }
    bucket: Bucket = LocalBucket()
    if _is_redis(settings.broker_url):
        bucket = RedisBucket(redis.Redis.from_url(settings.broker_url))
    return RequestBudget(bucket, rates)


def _drafter(settings: Settings) -> Drafter:
    """The model when a key is configured, else the offline template (the service still works)."""
    if settings.anthropic_api_key:
        return AnthropicDrafter(
            api_key=settings.anthropic_api_key,
            base_url=settings.anthropic_base_url,
            model=settings.anthropic_model,
            timeout=settings.llm_timeout,
        )
    return OfflineDrafter()


_lock = threading.Lock()
_per_process: dict[int, Container] = {}


def for_this_process(celery_app: Celery | None = None) -> Container:
    """One container per process, built on first use: a forked child never reuses its parent's
    engine or connections."""
    pid = os.getpid()
    with _lock:
        if pid not in _per_process:
            _per_process.clear()
            _per_process[pid] = build(celery_app=celery_app)
        return _per_process[pid]
