"""The simulator's scheduler: every actor (a worker thread, a heartbeat, beat, a client) is a
greenlet on one OS thread, and control passes between them only at `point()`, which every port
call makes (database, broker, PSA, model, clock). At each point the seeded random generator
picks which runnable actor goes next, and time moves only when no actor can run: it jumps to
the next wake-up. So a seed decides the whole run, event by event, and a run of simulated hours
takes milliseconds.

A process groups actors: pausing it stops them all at their next point until it resumes (a
freeze, a stall, SIGSTOP); killing it unwinds them with `Killed`, which no port lets through, so
nothing they do afterwards reaches the world (SIGKILL). Each process has its host clock's skew.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import greenlet

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
NEVER = float("inf")


class Killed(BaseException):
    """Thrown into the actors of a killed process; a BaseException, so `except Exception`
    blocks of the code under test cannot swallow it."""


# A seed takes some tens of thousands of switches; this many means actors that never wait.
MAX_SWITCHES = 2_000_000


class Stuck(Exception):
    """No actor can run and none will wake: the world deadlocked."""


@dataclass(eq=False)
class Process:
    name: str
    skew: float = 0.0  # seconds its host clock is off
    paused_until: float = 0.0
    alive: bool = True
    generation: int = 0  # restarts so far


@dataclass(eq=False)
class Actor:
    name: str
    process: Process | None
    seq: int
    wake_at: float = 0.0
    blocked: bool = False  # waiting for `Sim.wake`
    done: bool = False
    killed: bool = False
    job: str | None = None  # the job it works on, for the trace and the oracle
    glet: greenlet.greenlet | None = None


@dataclass
class Sim:
    seed: int
    tracing: bool = False
    now: float = 0.0
    rng: random.Random = field(init=False)
    actors: list[Actor] = field(default_factory=list)
    current: Actor | None = None
    lines: list[str] = field(default_factory=list)
    # Called at every point of an actor: the fault plan may pause the actor's process there.
    on_point: Callable[[Actor, str], None] = lambda actor, label: None
    _digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    _seq: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._main = greenlet.getcurrent()

    # Time

    def datetime(self, process: Process | None = None) -> datetime:
        """Now, by `process`'s host clock (the true time for None: the database's clock)."""
        skew = process.skew if process is not None else 0.0
        return EPOCH + timedelta(seconds=self.now + skew)

    # Actors

    def spawn(
        self, name: str, body: Callable[[], None], process: Process | None = None, delay: float = 0
    ) -> Actor:
        self._seq += 1
        actor = Actor(name, process, self._seq, wake_at=self.now + delay)

        def run() -> None:
            try:
                body()
            except Killed:
                pass
            finally:
                actor.done = True

        actor.glet = greenlet.greenlet(run, parent=self._main)
        self.actors.append(actor)
        return actor

    def close(self) -> None:
        """Unwind every actor still suspended, now and in order. Left to the garbage collector,
        a suspended greenlet is unwound at some moment of a later run (GreenletExit), and a
        port it calls on the way switches into that run's loop."""
        for actor in list(self.actors):
            actor.killed = True
            if actor.glet:  # started, not finished
                self.current = actor
                actor.glet.throw(Killed)
        self.current = None
        self.actors.clear()

    def point(self, label: str) -> None:
        """A port call of the current actor: another actor may run first."""
        actor = self.current
        if actor is None:  # setting the world up
            return
        self._alive(actor)
        self.on_point(actor, label)
        self.trace(label)
        self._main.switch()
        self._alive(actor)

    def sleep(self, seconds: float) -> None:
        actor = self.current
        assert actor is not None, "sleep outside an actor"
        self._alive(actor)
        actor.wake_at = self.now + max(seconds, 0.0)
        self._main.switch()
        self._alive(actor)

    def block(self) -> None:
        """Wait until another actor calls `wake` for this one."""
        actor = self.current
        assert actor is not None, "block outside an actor"
        self._alive(actor)
        actor.blocked = True
        self._main.switch()
        self._alive(actor)

    def wake(self, actor: Actor) -> None:
        actor.blocked = False

    @staticmethod
    def _alive(actor: Actor) -> None:
        if actor.killed:
            raise Killed

    # Processes

    def pause(self, process: Process, seconds: float) -> None:
        process.paused_until = max(process.paused_until, self.now + seconds)
        self.trace(f"FAULT pause {process.name} for {seconds:.1f} s")

    def kill(self, process: Process) -> None:
        process.alive = False
        process.paused_until = 0.0
        for actor in self.actors:
            if actor.process is process and not actor.done:
                actor.killed, actor.blocked, actor.wake_at = True, False, self.now
        self.trace(f"FAULT kill {process.name}")

    # The loop

    def _runnable(self, actor: Actor) -> bool:
        if actor.done or actor.blocked or actor.wake_at > self.now:
            return False
        return actor.killed or actor.process is None or actor.process.paused_until <= self.now

    def _next_time(self) -> float:
        times = [
            max(a.wake_at, a.process.paused_until if a.process and not a.killed else 0.0)
            for a in self.actors
            if not a.done and not a.blocked
        ]
        return min(times, default=NEVER)

    def run(self, until: float, finished: Callable[[], bool] = lambda: False) -> None:
        """Run actors until `finished()` holds or simulated time would pass `until`."""
        switches = 0
        while not finished():
            switches += 1
            if switches > MAX_SWITCHES:  # a livelock: report it, with its seed, not hang the run
                names = sorted({a.name for a in self.actors if self._runnable(a)})
                raise Stuck(f"{MAX_SWITCHES:,} switches by t={self.now:.3f}; runnable: {names}")
            runnable = [a for a in self.actors if self._runnable(a)]
            if not runnable:
                upcoming = self._next_time()
                if upcoming == NEVER:
                    raise Stuck(f"no actor can run at t={self.now:.3f}")
                if upcoming > until:
                    self.now = until
                    return
                self.now = upcoming
                continue
            actor = runnable[self.rng.randrange(len(runnable))]
            self.current = actor
            assert actor.glet is not None
            if not actor.killed:
                actor.glet.switch()
            elif actor.glet:  # started: unwind it; its ports let nothing through
                actor.glet.throw(Killed)
            else:  # never started
                actor.done = True
            self.current = None
            if actor.done:
                self.actors.remove(actor)

    # The trace: every point, fault and transition, hashed always, kept when tracing

    def trace(self, what: str) -> None:
        who = self.current.name if self.current else "-"
        job = f" [{self.current.job[:8]}]" if self.current and self.current.job else ""
        line = f"{self.now:10.3f} {who}{job}: {what}"
        self._digest.update(line.encode())
        if self.tracing:
            self.lines.append(line)

    @property
    def digest(self) -> str:
        return self._digest.hexdigest()
