"""What can go wrong in a run, drawn from the seed: each seed picks which kinds of fault it
injects and how often, so some runs are calm and some are storms. Every fault happens before
`end`; after it the world heals (outages end, paused processes resume, killed ones restart) and
the oracle expects every job to finish within the stated bound."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Window:
    """Faults of one kind, drawn while the simulated time is before `end`."""

    end: float = 0.0

    def active(self, now: float) -> bool:
        return now < self.end


@dataclass(frozen=True)
class MessageFaults(Window):
    p_drop: float = 0.0
    p_delay: float = 0.0
    p_duplicate: float = 0.0
    p_reorder: float = 0.0
    max_delay: float = 20.0


@dataclass(frozen=True)
class PsaFaults(Window):
    p_429: float = 0.0
    p_5xx: float = 0.0
    p_lost_answer: float = 0.0  # a write stored, its answer lost
    p_slow: float = 0.0  # an answer slower than the client's timeout
    p_refuse: float = 0.0  # a permanent refusal (403/400)
    p_not_applied: float = 0.0  # a status change accepted and not applied
    max_retry_after: float = 120.0


@dataclass(frozen=True)
class ModelFaults(Window):
    p_unavailable: float = 0.0
    p_rejected: float = 0.0


@dataclass(frozen=True)
class Event:
    at: float
    kind: str  # kill, pause, db_down, db_slow, redis_down, broker_down, broker_restart
    target: str = ""  # the process, for kill and pause
    seconds: float = 0.0  # how long it lasts (a kill: until the restart)


@dataclass
class FaultPlan:
    end: float
    psa: PsaFaults
    model: ModelFaults
    messages: MessageFaults
    pause_per_point: float  # chance that a worker's port call is where its process freezes
    max_pause: float
    beat_pause_per_point: float  # the same for beat: a sweep stalled between its reads and writes
    kill_per_point: float  # chance that a worker dies at a port call: between any two statements
    skews: dict[str, float]
    events: list[Event] = field(default_factory=list)
    # Timings where a pause is most dangerous (a lease, a lease and the settle time): a pause
    # is drawn near one of them as often as anywhere else, since a uniform draw rarely lands
    # in the second that matters.
    critical: tuple[float, ...] = ()

    def pause_length(self, rng: random.Random) -> float:
        if self.critical and rng.random() < 0.5:
            return max(0.1, rng.choice(self.critical) + rng.uniform(-1.0, 6.0))
        return rng.uniform(0.1, self.max_pause)

    def describe(self) -> str:
        kinds = sorted({e.kind for e in self.events})
        return (
            f"faults until t={self.end:.0f}: events {kinds or 'none'}, pauses "
            f"{self.pause_per_point:.4f}/point up to {self.max_pause:.0f} s, worker deaths "
            f"{self.kill_per_point:.4f}/point, skews "
            f"{ {k: round(v, 1) for k, v in self.skews.items()} }"
        )


def _maybe(rng: random.Random, chance: float, high: float) -> float:
    """A rate that is zero in most seeds, up to `high` in the others."""
    return rng.uniform(0, high) if rng.random() < chance else 0.0


def draw(
    rng: random.Random,
    processes: list[str],
    workers: list[str],
    end: float,
    critical: tuple[float, ...],
) -> FaultPlan:
    events: list[Event] = []

    def some(kind: str, chance: float, most: int, seconds: tuple[float, float], targets=("",)):
        if rng.random() < chance:
            for _ in range(rng.randint(1, most)):
                events.append(
                    Event(rng.uniform(0, end), kind, rng.choice(targets), rng.uniform(*seconds))
                )

    some("kill", 0.4, 3, (1.0, 60.0), tuple(workers))
    some("pause", 0.3, 3, (1.0, 200.0), tuple(workers))
    some("pause", 0.1, 1, (1.0, 60.0), ("beat",))
    some("kill", 0.1, 1, (1.0, 30.0), ("beat",))
    some("db_down", 0.25, 2, (1.0, 60.0))
    some("db_slow", 0.35, 2, (20.0, 300.0))  # lock contention, an I/O stall
    some("redis_down", 0.25, 2, (5.0, 150.0))
    some("broker_down", 0.15, 2, (1.0, 30.0))
    some("broker_restart", 0.15, 1, (0.0, 0.0))
    events.sort(key=lambda e: e.at)
    skewed = rng.random() < 0.3
    return FaultPlan(
        end=end,
        psa=PsaFaults(
            end=end,
            p_429=_maybe(rng, 0.4, 0.2),
            p_5xx=_maybe(rng, 0.4, 0.2),
            p_lost_answer=_maybe(rng, 0.4, 0.3),
            p_slow=_maybe(rng, 0.3, 0.2),
            p_refuse=_maybe(rng, 0.15, 0.05),
            p_not_applied=_maybe(rng, 0.3, 0.4),
            max_retry_after=rng.choice((5.0, 30.0, 120.0)),
        ),
        model=ModelFaults(
            end=end, p_unavailable=_maybe(rng, 0.3, 0.3), p_rejected=_maybe(rng, 0.1, 0.05)
        ),
        messages=MessageFaults(
            end=end,
            p_drop=_maybe(rng, 0.1, 0.05),
            p_delay=_maybe(rng, 0.3, 0.3),
            p_duplicate=_maybe(rng, 0.3, 0.3),
            p_reorder=_maybe(rng, 0.3, 0.3),
        ),
        pause_per_point=_maybe(rng, 0.3, 0.003),
        max_pause=rng.choice((5.0, 60.0, 240.0)),
        beat_pause_per_point=_maybe(rng, 0.2, 0.05),
        skews={p: (rng.uniform(-25, 25) if skewed else 0.0) for p in processes},
        events=events,
        critical=critical,
        kill_per_point=_maybe(rng, 0.3, 0.01),
    )
