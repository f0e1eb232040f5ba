"""One simulated deployment: the service's real domain code (the job entity, the pipeline, the
scheduler, the lease keeper, the jobs and sessions services, the bulk re-post, the request
budget) wired to simulated ports, and the actors that drive it:

- worker processes: Celery's consumer and its threads, each running one step at a time as
  `workers/tasks.py` does, with each step's heartbeat on a thread of its own;
- beat, which sweeps as `celery_config.build` says it does;
- clients that post, double-submit, retry, edit sessions, preview and re-post stuck jobs;
- the fault plan's driver, and the oracle's watch.

Every port call is a point where the simulator may run another actor (see engine.py), and every
clock is simulated: the database's is the true time, each host's is off by its skew.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from unittest import mock

from tests.fake_db import FakeUnitOfWork, Store
from tests.simulation.broker import (
    AMQP_HEARTBEAT_TIMEOUT,
    RESTORE_INTERVAL,
    SWEEP,
    Message,
    SimBroker,
)
from tests.simulation.engine import Actor, Process, Sim
from tests.simulation.faults import Event, FaultPlan, draw
from tests.simulation.oracle import Oracle
from tests.simulation.psa import SimBucket, SimPsa
from writeback import celery_config
from writeback.adapters.psa.budget import DEFAULT_RATES, RequestBudget, budget_key_of
from writeback.config import load_settings
from writeback.domain.accounts import Principal
from writeback.domain.drafting import Drafting, DraftPolicy, fingerprint, render_escalation
from writeback.domain.errors import DomainError, DraftRejected, LlmUnavailable, StoreUnavailable
from writeback.domain.jobs import JobService
from writeback.domain.lease import LeaseKeeper
from writeback.domain.model import (
    FINAL_STATES,
    Account,
    AccountSettings,
    AiSession,
    Draft,
    JobFilter,
    JobKind,
    JobState,
    PromptInput,
    PsaConnection,
    User,
    WritebackJob,
)
from writeback.domain.pipeline import WritebackPipeline
from writeback.domain.redaction import Redactor
from writeback.domain.repost import repost_one, stream_jobs
from writeback.domain.scheduler import Scheduler
from writeback.domain.sessions import SessionService
from writeback.domain.status_targets import StatusCatalog

FAULTS_END = 600.0  # faults happen in the first ten simulated minutes
DATABASE_RETRY_SECONDS = 5  # workers/tasks.py: a step whose database is down is retried then


# Ports: a point before every call, and the outages


class _Port:
    """Forwards calls to `target`, making each one a point (and failing it while down)."""

    def __init__(self, target: Any, label: str, guard: Callable[[str], None]) -> None:
        self._target, self._label, self._guard = target, label, guard

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._guard(f"{self._label}.{name}")
            return attr(*args, **kwargs)

        return call


class SimUnitOfWork(FakeUnitOfWork):
    def __init__(self, world: World, *, autocommit: bool = False) -> None:
        super().__init__(world.store, autocommit=autocommit)
        self.world = world

    def __enter__(self) -> SimUnitOfWork:
        self.world.db_point("db begin")
        self.actor = self.world.sim.current
        super().__enter__()
        for name in ("accounts", "connections", "sessions", "jobs", "drafts"):
            setattr(self, name, _Port(getattr(self, name), f"db {name}", self.world.db_point))
        return self

    def commit(self) -> None:
        self.world.db_point("db commit")
        super().commit()

    def now(self) -> datetime:
        self.world.db_point("db now")
        return super().now()

    def _apply(self) -> None:
        jobs = {k: v for (t, k), v in self._writes.items() if t == "jobs"}
        sessions = {k: v for (t, k), v in self._writes.items() if t == "sessions"}
        self.world.oracle.committing(jobs, sessions)
        super()._apply()
        for job in jobs.values():
            self.world.committed(job)
        if jobs:
            self.world.oracle.check_slots()


class SimFlag:
    def __init__(self, sim: Sim) -> None:
        self.sim, self.is_set, self.waiter = sim, False, None

    def set(self) -> None:
        self.is_set = True
        if self.waiter is not None:
            self.waiter.wake_at = min(self.waiter.wake_at, self.sim.now)

    def wait(self, timeout: float) -> bool:
        if not self.is_set:
            self.waiter = self.sim.current
            try:
                self.sim.sleep(timeout)
            finally:
                self.waiter = None
        return self.is_set


class SimThreads:
    """A process's background threads are actors of that process."""

    def __init__(self, sim: Sim, process: Process) -> None:
        self.sim, self.process = sim, process

    def flag(self) -> SimFlag:
        return SimFlag(self.sim)

    def start(self, target: Callable[[], None]) -> Callable[[], None]:
        done = SimFlag(self.sim)
        parent = self.sim.current

        def body() -> None:
            try:
                target()
            finally:
                done.set()

        actor = self.sim.spawn(f"{self.process.name}/heartbeat", body, self.process)
        actor.job = parent.job if parent else None

        def join() -> None:
            while not done.wait(60.0):
                pass

        return join


class SimDrafter:
    def __init__(self, world: World) -> None:
        self.world = world

    def fingerprint(self, prompt: PromptInput) -> str:
        return fingerprint("sim", prompt.fields())

    def draft(self, prompt: PromptInput) -> Draft:
        world, sim = self.world, self.world.sim
        sim.point("model draft")
        faults = world.plan.model
        sim.sleep(sim.rng.uniform(0.2, 3.0))
        if faults.active(sim.now) and sim.rng.random() < faults.p_unavailable:
            world.oracle.failure("transient")
            sim.trace("FAULT model unavailable")
            raise LlmUnavailable("model: 529 overloaded")
        if faults.active(sim.now) and sim.rng.random() < faults.p_rejected:
            world.oracle.failure("permanent")
            sim.trace("FAULT model draft refused")
            raise DraftRejected("The model refused to draft.", "draft_refused")
        if prompt.kind is JobKind.ESCALATE:
            return Draft(render_escalation(prompt.intake, [], [], "", []), drafter="sim")
        return Draft(f"## Resolution\n{prompt.intake}", drafter="sim")


class SimRegistry:
    def __init__(self, world: World) -> None:
        self.world = world

    def build(
        self,
        connection: PsaConnection,
        requests: int = 1,
        *,
        before_write: Callable[[], None] | None = None,
    ) -> Any:
        gate = self.world.budget.gate(connection.provider, budget_key_of(connection), requests)
        assert connection.id is not None
        return self.world.psas[connection.id].client(gate, before_write)


@dataclass
class Services:
    """The domain's services as one process of the deployment builds them."""

    process: Process
    pipeline: WritebackPipeline
    scheduler: Scheduler
    jobs: JobService
    sessions: SessionService


# The deployment


class World:
    def __init__(self, seed: int, *, tracing: bool = False) -> None:
        self.sim = sim = Sim(seed, tracing)
        rng = sim.rng
        self.broker_kind = rng.choice(("redis", "amqp"))
        url = "redis://sim:6379/0" if self.broker_kind == "redis" else "amqp://sim//"
        # Mostly the shipped timings; some seeds run short leases, where heartbeats and sweeps
        # cross far more often.
        lease = rng.choice(("30", "30", "30", "6", "3"))
        self.settings = load_settings(
            {"CELERY_BROKER_URL": url, "DATABASE_URL": "sqlite://", "WRITEBACK_STEP_LEASE": lease}
        )
        self.policy = self.settings.retry
        self.sweep_interval = self.settings.sweep_interval
        self.celery = celery_config.build(self.settings)
        self.threads = rng.randint(1, 3)
        workers = [f"worker-{i + 1}" for i in range(rng.randint(1, 3))]
        self.processes = {name: Process(name) for name in ("api", "beat", *workers)}
        critical = (
            self.policy.step_lease,
            self.policy.write_hold,
            self.policy.write_hold + self.policy.post_settle,
        )
        self.plan: FaultPlan = draw(rng, list(self.processes), workers, FAULTS_END, critical)
        for name, skew in self.plan.skews.items():
            self.processes[name].skew = skew
        self.store = Store(clock=lambda: sim.datetime(None), wait=lambda: sim.sleep(0.01))
        self.oracle = Oracle(self)
        self.db_down = False
        self.db_slow = False
        self.broker = SimBroker(
            sim,
            self.broker_kind,
            float(self._transport("visibility_timeout", 3600)),
            self.plan.messages,
            on_drop=lambda message: self.oracle.dropped.add(message.job_id or ""),
        )
        self.bucket = SimBucket(sim)
        self.budget = RequestBudget(self.bucket, DEFAULT_RATES)
        self.psas: dict[int, SimPsa] = {}
        self.finished_at: dict[str, float] = {}
        self.registry = SimRegistry(self)
        self.drafter = SimDrafter(self)
        self.consumers: dict[str, Consumer] = {}
        self.beat_up = True
        self._setup(rng.randint(1, 3), rng.randint(2, 6))
        self.services: dict[str, Services] = {"api": self._services(self.processes["api"])}
        sim.on_point = self._at_point
        self.healed_at = FAULTS_END

    def describe(self) -> str:
        workers = sum(1 for name in self.processes if name.startswith("worker"))
        return (
            f"{self.broker_kind} broker, {workers} workers x {self.threads} threads, "
            f"{len(self.psas)} PSA tenants, {len(self.session_ids)} sessions, "
            f"{len(self.store.jobs)} jobs; {self.plan.describe()}"
        )

    # Timings the oracle holds the run to

    @property
    def bound(self) -> float:
        """Once faults stop, a job still has at most: one wait already scheduled (the longest
        backoff, Retry-After or settle), a lost lease, the verification's own retries, its
        tenant's budget for the jobs still open, and its remaining steps and sweeps."""
        policy = self.policy
        longest_wait = max(policy.backoff_max, self.plan.psa.max_retry_after, policy.post_settle)
        verify = policy.verify_attempts * policy.verify_backoff_max
        budget = 6 * len(self.store.jobs) / min(r.per_second for r in DEFAULT_RATES.values())
        return longest_wait + policy.step_lease + verify + budget + 60 * self.sweep_interval

    def scheduler_can_run(self) -> bool:
        """Whether a sweep can happen now: beat is up, the database and the broker answer, and
        a worker is there to run steps (and, when the sweep is queued, the sweep itself)."""
        beat = self.processes["beat"]
        workers = [c.process for c in self.consumers.values()]
        return (
            self.beat_up
            and beat.paused_until <= self.sim.now
            and not self.db_down
            and not self.db_slow
            and not self.broker.down
            and any(p.alive and p.paused_until <= self.sim.now for p in workers)
        )

    def live_consumers(self) -> list[Consumer]:
        return [c for c in self.consumers.values() if c.process.alive]

    def frozen_lock(self, key: object) -> bool:
        """Whether a transaction of a paused process holds `key`: what waits for it waits for
        the pause (as it would on PostgreSQL)."""
        holder = self.store.locks.get(key)
        actor = getattr(holder, "actor", None)
        process = actor.process if actor is not None else None
        return process is not None and process.paused_until > self.sim.now

    # Wiring

    def _transport(self, name: str, default: Any) -> Any:
        return self.celery.get("broker_transport_options", {}).get(name, default)

    @property
    def sweeps_in_queue(self) -> bool:
        """Beat sends the sweep to the step queue (workers run it) unless it sweeps itself."""
        return self.celery.get("beat_scheduler") != celery_config.SWEEPING_SCHEDULER

    def db_point(self, label: str) -> None:
        """A database call; while the database is down it fails as the SQL unit of work's do
        (adapters/db/repositories.py turns a refused connection into StoreUnavailable)."""
        self.sim.point(label)
        if self.db_down:
            raise StoreUnavailable("The database did not answer: OperationalError")
        # A round trip, while others go on: a few milliseconds, seconds while the database is slow.
        slow = self.db_slow and self.sim.now < self.plan.end
        self.sim.sleep(
            self.sim.rng.uniform(0.05, 3.0) if slow else self.sim.rng.uniform(0.0002, 0.003)
        )

    def uow(self) -> SimUnitOfWork:
        return SimUnitOfWork(self)

    def claims(self) -> SimUnitOfWork:
        return SimUnitOfWork(self, autocommit=True)

    def clock_of(self, process: Process) -> Callable[[], datetime]:
        def clock() -> datetime:
            self.sim.point("clock")
            return self.sim.datetime(process)

        return clock

    def monotonic(self) -> float:
        self.sim.point("monotonic")
        return self.sim.now

    def _services(self, process: Process) -> Services:
        policy = self.policy
        drafting = Drafting(drafter=self.drafter, redactor=Redactor(), policy=DraftPolicy())
        scheduler = Scheduler(uow=self.uow, queue=self.broker, policy=policy)
        pipeline = WritebackPipeline(
            uow=self.uow,
            queue=self.broker,
            scheduler=scheduler,
            registry=self.registry,
            drafting=drafting,
            # Its cache reads the clock under a thread lock: a switch there would block the one
            # OS thread every actor runs on, so that read is no switch point.
            statuses=StatusCatalog(lambda: self.sim.datetime(process)),
            policy=policy,
            leases=LeaseKeeper(
                uow=self.claims, lease=policy.step_lease, threads=SimThreads(self.sim, process)
            ),
            sleep=self.sim.sleep,
            monotonic=self.monotonic,
            claims=self.claims,
        )
        return Services(
            process,
            pipeline,
            scheduler,
            JobService(uow=self.uow, reads=self.uow, scheduler=scheduler, drafting=drafting),
            SessionService(uow=self.uow, reads=self.uow, clock=self.clock_of(process)),
        )

    def _setup(self, tenants: int, sessions: int) -> None:
        rng, now = self.sim.rng, self.sim.datetime()
        with FakeUnitOfWork(self.store) as tx:
            account = Account(name="msp", created_at=now)
            tx.accounts.add_account(account)
            user = User(account_id=account.id, created_at=now)
            tx.accounts.add_user(user)
            self.principal = Principal(account.id, user.id)
            if rng.random() < 0.8:
                tx.accounts.add_settings(AccountSettings(account.id, 42, 43))
            self.tickets: list[tuple[int, str]] = []
            for n in range(tenants):
                connection = PsaConnection(
                    account_id=account.id,
                    provider="connectwise",
                    site_url=f"https://psa{n}.example.com",
                    company_id=f"T{n}",
                    credentials_encrypted=b"sealed",
                    created_at=now,
                )
                tx.connections.add(connection)
                psa = SimPsa(
                    self.sim,
                    f"psa{n}",
                    self.plan.psa,
                    self.oracle,
                    self.settings.psa_timeout,
                    self.policy.post_settle,
                )
                for t in range(4):
                    ticket = f"{n + 1}{t:03d}"
                    board = rng.choice((1, 1, 1, 21))  # 21: the account's statuses are not on it
                    psa.data.add_ticket(ticket, 1 if board == 1 else 17, board)
                    self.tickets.append((connection.id, ticket))
                self.psas[connection.id] = psa
            self.session_ids = []
            for _ in range(sessions):
                connection_id, ticket = rng.choice([*self.tickets, (None, None)])
                session = AiSession(
                    account_id=account.id,
                    user_id=user.id,
                    session_type="chat",
                    intake_type="free_text",
                    created_at=now,
                    updated_at=now,
                    intake_content={"text": "Printer offline"},
                    conversation_messages=[{"role": "assistant", "content": "Restarted it."}],
                    psa_connection_id=connection_id,
                    psa_ticket_id=ticket,
                )
                tx.sessions.add(session)
                self.session_ids.append(session.id)
            tx.commit()

    # What the oracle reads of the world

    def committed(self, job: WritebackJob) -> None:
        self.sim.trace(
            f"JOB {job.id[:8]} {job.state}/{job.step} attempts {job.attempts} "
            f"message {job.message_id} due {job.due_at and f'{job.due_at:%H:%M:%S}'}"
        )
        if job.state in FINAL_STATES:
            self.finished_at.setdefault(job.id, self.sim.now)
        else:
            self.finished_at.pop(job.id, None)

    def notes_of(self, job: WritebackJob) -> list[tuple[int, str]]:
        marker = job.note_marker.lower()
        return [
            (connection_id, ticket)
            for connection_id, psa in self.psas.items()
            for ticket, notes in psa.data.notes.items()
            for note in notes
            if marker in note.text.lower()
        ]

    # Faults

    def _at_point(self, actor: Actor, label: str) -> None:
        process, plan = actor.process, self.plan
        if process is None or process.name == "api" or self.sim.now >= plan.end:
            return
        rng = self.sim.rng
        if process.name == "beat":  # short stalls, often: a sweep caught between read and write
            if plan.beat_pause_per_point and rng.random() < plan.beat_pause_per_point:
                seconds = min(rng.uniform(0.2, 15.0), plan.end - self.sim.now)
                self.pause(process, seconds, at=label)
        elif plan.kill_per_point and rng.random() < plan.kill_per_point:
            self.kill_worker(process.name, min(rng.uniform(1.0, 60.0), plan.end - self.sim.now))
        elif plan.pause_per_point and rng.random() < plan.pause_per_point:
            seconds = min(plan.pause_length(rng), plan.end - self.sim.now)
            self.pause(process, seconds, at=label)

    def pause(self, process: Process, seconds: float, at: str = "") -> None:
        self.sim.pause(process, seconds)
        self.sim.trace(f"FAULT {process.name} paused for {seconds:.1f} s at {at}")
        consumer = self.consumers.get(process.name)
        if self.broker_kind == "amqp" and consumer and seconds > AMQP_HEARTBEAT_TIMEOUT:
            # The broker closes a silent connection: its unacknowledged messages go back.
            def drop() -> None:
                self.sim.sleep(AMQP_HEARTBEAT_TIMEOUT)
                self.broker.connection_lost(consumer)

            self.sim.spawn("amqp-heartbeat", drop)

    def _drive(self) -> None:
        for event in self.plan.events:
            self.sim.sleep(event.at - self.sim.now)
            self._apply(event)

    def _apply(self, event: Event) -> None:
        sim, seconds = self.sim, min(event.seconds, self.plan.end - self.sim.now)
        if event.kind == "kill" and event.target == "beat":
            sim.kill(self.processes["beat"])
            self.beat_up = False
            sim.spawn("restart-beat", lambda: (sim.sleep(seconds), self.start_beat()))
        elif event.kind == "kill":
            self.kill_worker(event.target, seconds)
        elif event.kind == "pause":
            process = self.processes[event.target]
            if process.alive:
                length = min(self.plan.pause_length(sim.rng), self.plan.end - sim.now)
                self.pause(process, length, at="the plan")
        else:
            sim.spawn(event.kind, lambda: self._outage(event.kind, seconds))

    def kill_worker(self, name: str, seconds: float) -> None:
        """SIGKILL, and a restart `seconds` later."""
        consumer = self.consumers.get(name)
        if consumer is None or not consumer.process.alive:
            return
        self.sim.kill(consumer.process)
        if self.broker_kind == "amqp":
            self.broker.connection_lost(consumer)
        self.sim.spawn(
            f"restart-{name}", lambda: (self.sim.sleep(seconds), self.start_worker(name))
        )

    def _outage(self, kind: str, seconds: float) -> None:
        def switch(down: bool) -> None:
            if kind == "db_down":
                self.db_down = down
            if kind == "db_slow":
                self.db_slow = down
            if kind == "broker_down" or (kind == "redis_down" and self.broker_kind == "redis"):
                self.broker.down = down
            if kind == "redis_down":
                self.bucket.down = down
            self.sim.trace(f"FAULT {kind} {'begins' if down else 'ends'}")

        if kind == "broker_restart":
            self.broker.restart()
            return
        switch(True)
        self.sim.sleep(seconds)
        switch(False)

    # Processes

    def start_worker(self, name: str) -> None:
        process = self.processes[name]
        process.alive, process.paused_until = True, 0.0
        process.generation += 1
        self.services[name] = self._services(process)
        consumer = Consumer(self, process)
        self.consumers[name] = consumer
        consumer.start()

    def start_beat(self) -> None:
        process = self.processes["beat"]
        process.alive, process.paused_until = True, 0.0
        process.generation += 1
        self.beat_up = True
        self.services["beat"] = self._services(process)
        self.sim.spawn("beat", self._beat, process)

    def _beat(self) -> None:
        entry = next(e for e in self.celery["beat_schedule"].values() if e["task"] == SWEEP)
        scheduler = self.services["beat"].scheduler
        while True:
            self.sim.sleep(self.sweep_interval)
            if not self.sweeps_in_queue:
                try:
                    scheduler.tick()
                except StoreUnavailable:
                    pass
                continue
            expires = entry.get("options", {}).get("expires")
            if not self.broker.down:
                self.broker.publish(
                    Message(
                        SWEEP, None, f"sweep-{self.sim.now:.3f}", expires=self.sim.now + expires
                    )
                )

    def _restorer(self) -> None:
        while True:
            self.sim.sleep(RESTORE_INTERVAL)
            if any(c.process.alive for c in self.consumers.values()) and not self.broker.down:
                self.broker.restore_visible()

    def _watch(self) -> None:
        while True:
            self.sim.sleep(self.sweep_interval)
            self.oracle.watch()

    # Clients

    def _script(self) -> None:
        rng, sim = self.sim.rng, self.sim
        actions = sorted(
            (rng.uniform(0, FAULTS_END), rng.choice(ACTIONS)) for _ in range(rng.randint(3, 12))
        )
        n = itertools.count(1)
        for at, action in actions:
            sim.sleep(at - sim.now)
            session_id = rng.choice(self.session_ids)
            kind = rng.choice((JobKind.RESOLVE, JobKind.ESCALATE))
            copies = 2 if action == "double" else 1
            for _ in range(copies):
                sim.spawn(
                    f"client-{next(n)}-{action}",
                    lambda a=action, s=session_id, k=kind: self._client(a, s, k),
                    self.processes["api"],
                )

    def _client(self, action: str, session_id: int, kind: JobKind) -> None:
        api, rng = self.services["api"], self.sim.rng
        try:
            if action in ("post", "double"):
                markdown = rng.choice((None, "## Resolution\nRestarted the spooler."))
                if kind is JobKind.ESCALATE and markdown:
                    markdown = render_escalation("printer", [], [], "", [])
                api.jobs.request_writeback(self.principal, session_id, kind, markdown)
            elif action == "edit":
                api.sessions.update(self.principal, session_id, self._edit())
            elif action == "retry":
                failed = [j.id for j in self.store.jobs.values() if j.state is JobState.FAILED]
                if failed:
                    api.jobs.retry(rng.choice(sorted(failed)), self.principal.account_id)
            elif action == "repost":
                where = JobFilter(states=(str(JobState.FAILED),))
                for job in stream_jobs(where, uow=self.uow, page_size=3):
                    repost_one(job, jobs=api.jobs)
            elif action == "preview":
                api.jobs.preview(self.principal, session_id, kind)
        except DomainError:
            pass  # an answer: 4xx, or 503 while the database is away
        except Exception as exc:  # a 500
            self.oracle.violation(f"client {action} raised {type(exc).__name__}: {exc}")

    def _edit(self) -> dict[str, Any]:
        rng = self.sim.rng
        if rng.random() < 0.3:
            return {"conversation_messages": [{"role": "user", "content": "Still broken?"}]}
        connection_id, ticket = rng.choice([*self.tickets, (None, None)])
        return {"psa_connection_id": connection_id, "psa_ticket_id": ticket}

    # The run

    def run(self) -> Oracle:
        """Run to the end and check; the seed alone decides the run: the code's own random
        draws (backoff jitter, the budget's spreading) and its ids come from it too."""
        rng = random.Random(self.sim.seed)
        random.seed(self.sim.seed)
        with mock.patch.object(
            uuid, "uuid4", lambda: uuid.UUID(int=rng.getrandbits(128), version=4)
        ):
            try:
                return self._run()
            finally:
                self.sim.close()

    def _run(self) -> Oracle:
        sim = self.sim
        for name in self.processes:
            if name.startswith("worker"):
                self.start_worker(name)
        self.start_beat()
        sim.spawn("faults", self._drive)
        sim.spawn("clients", self._script)
        sim.spawn("watch", self._watch)
        if self.broker_kind == "redis":
            sim.spawn("broker-restore", self._restorer)

        def settled() -> bool:
            return sim.now >= FAULTS_END and all(
                job.state in FINAL_STATES for job in self.store.jobs.values()
            )

        sim.run(until=FAULTS_END + self.bound + self.policy.pickup_timeout + 60, finished=settled)
        self.oracle.check_end(self.healed_at)
        return self.oracle


ACTIONS = ("post", "post", "post", "double", "edit", "retry", "repost", "preview")


class Consumer:
    """One worker process: Celery's consumer reserving messages for its threads, and the
    threads, each running one message at a time as `workers/tasks.py` does."""

    def __init__(self, world: World, process: Process) -> None:
        self.world, self.process = world, process
        celery = world.celery
        self.acks_late = bool(celery.get("task_acks_late", False))
        self.no_prefetch = (
            bool(celery.get("worker_disable_prefetch")) and world.broker_kind == "redis"
        )
        self.prefetch = int(celery.get("worker_prefetch_multiplier", 4)) * world.threads
        self.reserved: list[Message] = []
        self.active = 0
        self.idle: list[Actor] = []
        self.consumer_actor: Actor | None = None

    def start(self) -> None:
        sim, name = self.world.sim, self.process.name
        self.consumer_actor = sim.spawn(f"{name}/consumer", self._consume, self.process)
        for i in range(self.world.threads):
            sim.spawn(f"{name}/thread-{i + 1}", self._thread, self.process)

    def _can_consume(self) -> bool:
        if self.no_prefetch:
            return len(self.reserved) + self.active < self.world.threads
        unacked = len(self.reserved) + (self.active if self.acks_late else 0)
        return unacked < self.prefetch

    def _consume(self) -> None:
        sim = self.world.sim
        while True:
            while not self._can_consume():
                sim.block()
            message = self.world.broker.take(self)
            self.reserved.append(message)
            for actor in self.idle:
                sim.wake(actor)

    def _thread(self) -> None:
        sim, world = self.world.sim, self.world
        me = sim.current
        assert me is not None
        while True:
            while not self.reserved:
                self.idle.append(me)
                try:
                    sim.block()
                finally:
                    self.idle.remove(me)
            message = self.reserved.pop(0)
            self.active += 1
            if not self.acks_late:
                world.broker.ack(message)
            if self.consumer_actor is not None:
                sim.wake(self.consumer_actor)
            try:
                self._run(message)
            finally:
                self.active -= 1
                if self.acks_late and not me.killed:  # a killed process acknowledges nothing
                    world.broker.ack(message)
                if self.consumer_actor is not None:
                    sim.wake(self.consumer_actor)

    def _run(self, message: Message) -> None:
        sim, world = self.world.sim, self.world
        services = world.services[self.process.name]
        if message.task == SWEEP:
            if message.expires is not None and sim.now > message.expires:
                sim.trace(f"sweep {message.message_id} expired")
                return
            try:
                services.scheduler.tick()
            except StoreUnavailable:
                pass
            return
        me = sim.current
        assert me is not None and message.job_id is not None
        me.job = message.job_id
        world.oracle.begin_run(me, message.job_id, str(message.step), message.message_id)
        try:
            services.pipeline.run_step(message.job_id, message.step, message.message_id)
        except StoreUnavailable:  # tasks.py: retry the message while the database is down
            world.broker.publish(
                Message(message.task, message.job_id, message.message_id),
                delay=DATABASE_RETRY_SECONDS,
            )
        except Exception as exc:
            world.oracle.violation(f"step {message.step} of job {message.job_id} raised {exc!r}")
        finally:
            world.oracle.end_run(me)
            me.job = None
