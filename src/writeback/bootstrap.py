"""The composition root: the one place that reads settings and builds engines, clients and
services. Nothing here runs at import time; each process builds its own container after fork."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
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
from writeback.adapters.psa.slots import LocalSlots, RedisSlots, Slots
from writeback.adapters.queue import BrokerEpoch, CeleryJobQueue, create_celery_app
from writeback.adapters.stream_credentials import StreamCredentials
from writeback.config import Settings, is_redis, load_settings
from writeback.domain.accounts import AccountService
from writeback.domain.connections import ConnectionService
from writeback.domain.drafting import Drafting, DraftPolicy
from writeback.domain.jobs import JobService
from writeback.domain.lease import LeaseKeeper
from writeback.domain.model import utcnow
from writeback.domain.pipeline import WritebackPipeline
from writeback.domain.ports import Drafter, JobFeed, UnitOfWorkFactory
from writeback.domain.redaction import Redactor
from writeback.domain.scheduler import Scheduler
from writeback.domain.sessions import SessionService
from writeback.domain.status_targets import StatusCatalog

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    engine: sa.Engine
    read_engine: sa.Engine
    uow: UnitOfWorkFactory
    # Reads that need no transaction (status polling, auth): autocommit, fewer round trips.
    read_uow: UnitOfWorkFactory
    sealer: FernetSealer
    rates: dict[str, Rate]  # each PSA's request budget per tenant
    bucket: Bucket  # where the budgets are kept: Redis, shared by every process, or in-process
    registry: ProviderRegistry
    celery: Celery
    queue: CeleryJobQueue
    drafting: Drafting
    metrics: WorkerMetrics
    pipeline: WritebackPipeline
    scheduler: Scheduler
    # The use cases, one service per resource; reads use the autocommit engine.
    accounts: AccountService
    connections: ConnectionService
    sessions: SessionService
    jobs: JobService
    feed: JobFeed
    stream_credentials: StreamCredentials  # what a job's events_url carries

    def close(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()


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
    pool = db_connections or max(5, settings.worker_concurrency)
    overflow = 0 if db_connections else 10  # capped: threads queue for a connection
    engine = create_engine(settings.database_url, pool_size=pool, max_overflow=overflow)
    read_engine = (
        engine
        if settings.database_url.startswith("sqlite")
        else create_engine(
            settings.database_url,
            read_only=True,
            pool_size=db_connections or 5,
            max_overflow=overflow,
        )
    )
    rates, bucket = _rates(settings), _bucket(settings)
    keys = settings.secret_keys or (load_or_create_key_file(settings.secret_key_file),)
    sealer = FernetSealer(keys)
    metrics = WorkerMetrics()
    registry = ProviderRegistry(
        default_specs(cw_process_notifications=settings.cw_process_notifications),
        sealer=sealer,
        http=HttpClient(settings.psa_timeout, observer=metrics.observe_psa_answer),
        budget=RequestBudget(bucket, rates),
        slots=_slots(settings),
        host_policy=settings.psa_host_policy,
    )
    celery = celery_app or create_celery_app(settings)
    feed = _feed(settings)
    # Every committed job transition is published to pollers and event streams by the unit of
    # work itself, so no path that moves a job can forget to.
    uow = partial(SqlAlchemyUnitOfWork, session_factory(engine), feed)
    read_uow = partial(SqlAlchemyUnitOfWork, session_factory(read_engine))
    queue = CeleryJobQueue(celery, _broker_epoch(settings))
    policy = settings.retry
    drafting = Drafting(
        drafter=_drafter(settings),
        redactor=Redactor(settings.redact_patterns),
        policy=DraftPolicy(settings.draft_max_chars, settings.draft_link_hosts),
    )
    # Single guarded statements (a claim, a fenced write, a heartbeat) need no BEGIN/COMMIT;
    # a claim is published, a fence or a heartbeat changes nothing a follower sees.
    autocommit = session_factory(engine.execution_options(isolation_level="AUTOCOMMIT"))
    statements = partial(SqlAlchemyUnitOfWork, autocommit)
    scheduler = Scheduler(uow=uow, queue=queue, policy=policy)
    pipeline = WritebackPipeline(
        uow=uow,
        queue=queue,
        scheduler=scheduler,
        registry=registry,
        drafting=drafting,
        statuses=StatusCatalog(utcnow),
        policy=policy,
        leases=LeaseKeeper(uow=statements, lease=policy.step_lease),
        sleep=time.sleep,
        claims=partial(SqlAlchemyUnitOfWork, autocommit, feed),
        fences=statements,
    )

    return Container(
        settings=settings,
        engine=engine,
        read_engine=read_engine,
        uow=uow,
        read_uow=read_uow,
        sealer=sealer,
        rates=rates,
        bucket=bucket,
        registry=registry,
        celery=celery,
        queue=queue,
        drafting=drafting,
        metrics=metrics,
        pipeline=pipeline,
        scheduler=scheduler,
        accounts=AccountService(uow=uow, reads=read_uow, clock=utcnow),
        connections=ConnectionService(
            uow=uow,
            sealer=sealer,
            registry=registry.interactive(),  # a person waits on its PSA calls
            check_url=registry.configure_url,
            clock=utcnow,
        ),
        sessions=SessionService(uow=uow, reads=read_uow, clock=utcnow),
        jobs=JobService(uow=uow, reads=read_uow, scheduler=scheduler, drafting=drafting),
        feed=feed,
        stream_credentials=StreamCredentials(keys, timedelta(minutes=settings.events_url_minutes)),
    )


def _feed(settings: Settings) -> JobFeed:
    """Through Redis when there is one (every API process sees the worker's versions);
    in-process otherwise."""
    if settings.redis_url:
        return RedisJobFeed(redis.Redis.from_url(settings.redis_url, socket_timeout=5))
    return LocalJobFeed()


def _broker_epoch(settings: Settings) -> BrokerEpoch | None:
    """Only a Redis broker loses its messages when it restarts (it keeps nothing on disk)."""
    if is_redis(settings.broker_url):
        return BrokerEpoch(redis.Redis.from_url(settings.broker_url))
    return None


def _rates(settings: Settings) -> dict[str, Rate]:
    return {
        name: Rate(settings.psa_rate or rate.per_second, settings.psa_burst or rate.burst)
        for name, rate in DEFAULT_RATES.items()
    }


def _bucket(settings: Settings) -> Bucket:
    """Shared by every worker through Redis when there is one; per process otherwise."""
    if settings.redis_url:
        return RedisBucket(redis.Redis.from_url(settings.redis_url))
    if not settings.uses_filesystem_broker:
        log.warning(
            "no WRITEBACK_REDIS_URL: each process keeps its own PSA request budget, so several "
            "workers together may exceed a PSA's rate limit"
        )
    return LocalBucket()


def _slots(settings: Settings) -> Slots:
    """The PSAs' concurrency limits, kept where the budget is (and warned about with it)."""
    return (
        RedisSlots(redis.Redis.from_url(settings.redis_url)) if settings.redis_url else LocalSlots()
    )


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
