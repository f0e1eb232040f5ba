"""The broker: the domain's `JobQueue` on one side, Celery's consumers on the other.

Modelled from what Celery and kombu do with the settings `celery_config.build` gives them:
- early or late acknowledgement, a worker's prefetch (`worker_prefetch_multiplier`, or none
  with `worker_disable_prefetch`), and Celery's retry of a step whose database was down (the
  same message again, with a countdown);
- Redis: a message delivered and not acknowledged comes back once the visibility timeout has
  passed (a live consumer restores it), and a restart without persistence loses everything,
  which the epoch in each message id proves;
- RabbitMQ: durable; a consumer's unacknowledged messages come back as soon as its connection
  drops (a killed worker at once, a paused one when its heartbeat times out).
Faults: unreachable, restarted, and per message: delivered late, twice, out of order, or never.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from writeback.domain.model import Step

if TYPE_CHECKING:
    from tests.simulation.engine import Actor, Sim
    from tests.simulation.faults import MessageFaults

SWEEP = "writeback.sweep"
RESTORE_INTERVAL = 10.0  # how often a kombu consumer looks for messages to restore
AMQP_HEARTBEAT_TIMEOUT = 120.0  # a paused consumer's connection is closed after this


class BrokerDown(ConnectionError):
    """The broker is unreachable (what kombu raises, as far as the domain can tell)."""


@dataclass(eq=False)
class Message:
    task: str  # writeback.<step>, or writeback.sweep
    job_id: str | None
    message_id: str
    visible_at: float = 0.0
    expires: float | None = None

    @property
    def step(self) -> Step:
        return Step(self.task.removeprefix("writeback."))


@dataclass(eq=False)
class Delivery:
    message: Message
    consumer: object  # the worker process that holds it
    since: float


@dataclass
class SimBroker:
    sim: Sim
    kind: str  # "redis" or "amqp"
    visibility_timeout: float
    faults: MessageFaults
    on_drop: Callable[[Message], None] = lambda message: None
    down: bool = False
    epoch: int = 1
    restarted_at: float = 0.0
    queue: list[Message] = field(default_factory=list)
    unacked: list[Delivery] = field(default_factory=list)
    waiting: list[Actor] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # The JobQueue port

    def new_message_id(self) -> str:
        self.sim.point("broker new_message_id")
        epoch = "unknown" if self.down and self.kind == "redis" else str(self.epoch)
        return f"{epoch if self.kind == 'redis' else 'durable'}.m{next(self._ids)}"

    def enqueue(self, job_id: str, step: Step, message_id: str) -> None:
        self.sim.point(f"broker send {step} {message_id}")
        if self.down:
            raise BrokerDown("broker unreachable")
        self.publish(Message(f"writeback.{step}", job_id, message_id))

    def lost(self, message_id: str) -> bool:
        self.sim.point(f"broker lost? {message_id}")
        return not self.down and self.lost_in_restart(message_id)

    def lost_in_restart(self, message_id: str) -> bool:
        """Sent before Redis restarted without persistence (its id names an older epoch)."""
        return self.kind == "redis" and message_id.split(".", 1)[0] != str(self.epoch)

    # Publishing, with the message faults

    def publish(self, message: Message, delay: float = 0.0) -> None:
        faults, rng = self.faults, self.sim.rng
        message.visible_at = self.sim.now + delay
        if faults.active(self.sim.now):
            if rng.random() < faults.p_drop:
                self.on_drop(message)
                self.sim.trace(f"FAULT broker drops {message.task} {message.message_id}")
                return
            if rng.random() < faults.p_delay:
                message.visible_at += rng.uniform(0.5, faults.max_delay)
                self.sim.trace(f"FAULT broker delays {message.message_id}")
            if rng.random() < faults.p_duplicate:
                twin = Message(message.task, message.job_id, message.message_id)
                twin.visible_at = message.visible_at + rng.uniform(0, faults.max_delay)
                self._put(twin, rng.random() < faults.p_reorder)
                self.sim.trace(f"FAULT broker duplicates {message.message_id}")
            if rng.random() < faults.p_reorder:
                self._put(message, True)
                return
        self._put(message, False)

    def _put(self, message: Message, anywhere: bool) -> None:
        at = self.sim.rng.randrange(len(self.queue) + 1) if anywhere else len(self.queue)
        self.queue.insert(at, message)
        for actor in self.waiting:
            self.sim.wake(actor)

    # Consumers

    def take(self, consumer: object) -> Message:
        """The next visible message, delivered (unacknowledged) to `consumer`; waits for one."""
        while True:
            if not self.down:
                for message in self.queue:
                    if message.visible_at <= self.sim.now:
                        self.queue.remove(message)
                        self.unacked.append(Delivery(message, consumer, self.sim.now))
                        return message
            upcoming = [m.visible_at for m in self.queue if m.visible_at > self.sim.now]
            actor = self.sim.current
            assert actor is not None
            if self.down:
                self.sim.sleep(1.0)
            elif upcoming:
                self.sim.sleep(min(upcoming) - self.sim.now)
            else:
                self.waiting.append(actor)
                try:
                    self.sim.block()
                finally:
                    self.waiting.remove(actor)

    def holds(self, message_id: str, live: list[object]) -> bool:
        """Whether a copy of the message is where a live consumer gets it: queued, or taken
        by a live consumer."""
        if any(m.message_id == message_id for m in self.queue):
            return True
        if any(d.message.message_id == message_id and d.consumer in live for d in self.unacked):
            return True
        return any(message_id in (m.message_id for m in getattr(c, "reserved", ())) for c in live)

    def taken_by_the_dead(self, message_id: str) -> float | None:
        """When a consumer that died before acknowledging it took the message, if one did:
        Redis gives it back the visibility timeout after that."""
        return max(
            (d.since for d in self.unacked if d.message.message_id == message_id), default=None
        )

    def ack(self, message: Message) -> None:
        self.unacked = [d for d in self.unacked if d.message is not message]

    def connection_lost(self, consumer: object) -> None:
        """RabbitMQ requeues a dropped consumer's unacknowledged messages at once."""
        mine = [d for d in self.unacked if d.consumer is consumer]
        self.unacked = [d for d in self.unacked if d.consumer is not consumer]
        for delivery in mine:
            self._put(delivery.message, False)

    def restore_visible(self) -> None:
        """What a live kombu consumer does every few seconds on Redis."""
        ceiling = self.sim.now - self.visibility_timeout
        old = [d for d in self.unacked if d.since <= ceiling]
        self.unacked = [d for d in self.unacked if d.since > ceiling]
        for delivery in old:
            copy = Message(
                delivery.message.task, delivery.message.job_id, delivery.message.message_id
            )
            self._put(copy, False)
            self.sim.trace(f"broker restores {copy.message_id} (visibility timeout)")

    def restart(self) -> None:
        """Redis without persistence: every queued and delivered message is gone."""
        if self.kind == "redis":
            self.queue.clear()
            self.unacked.clear()
            self.epoch += 1
            self.restarted_at = self.sim.now
        self.sim.trace(f"FAULT broker restarts (epoch {self.epoch})")
