"""A PSA per tenant: tickets, notes, statuses and the marker search of `FakePsaProvider` (which
the provider contract suite holds to the real providers), behind what HTTP does to them: the
request budget paid before each request, latency, 429 with Retry-After, 5xx, answers slower than
the client's timeout, writes stored and their answers lost, permanent refusals, and status
changes accepted but not applied. A write the client gave up on may still be stored a little
later, never later than the settle time after it was sent (the assumption `post_settle` rests
on)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import redis

from tests.fakes import FakePsaProvider
from writeback.adapters.psa.budget import LocalBucket, Rate
from writeback.domain.errors import (
    PsaAmbiguousError,
    PsaRejected,
    PsaTransientError,
)
from writeback.domain.model import Board, BoardStatus, NoteType, PostedNote, Ticket

if TYPE_CHECKING:
    from tests.simulation.engine import Sim
    from tests.simulation.faults import PsaFaults
    from tests.simulation.oracle import Oracle

T = TypeVar("T")
READS = ("GET", "HEAD")


class SimBucket(LocalBucket):
    """The shared request budget (Redis in a deployment): one for every process, on the
    simulated clock, and unreachable while Redis is down."""

    def __init__(self, sim: Sim) -> None:
        super().__init__(clock=lambda: sim.now)
        self.sim = sim
        self.down = False

    def take(self, key: str, rate: Rate, count: int = 1, keep: int = 0) -> float:
        self.sim.point("redis budget take")
        if self.down:
            raise redis.ConnectionError("Error 111 connecting to redis:6379. Connection refused.")
        return super().take(key, rate, count, keep)


@dataclass
class SimPsa:
    """One tenant's PSA. `reads` logs each ticket read the client received: (time, status)."""

    sim: Sim
    name: str
    faults: PsaFaults
    oracle: Oracle
    timeout: float
    settle: float  # a write it received is stored within this, or never (WRITEBACK_POST_SETTLE)
    data: FakePsaProvider = field(default_factory=FakePsaProvider)
    reads: dict[str, list[tuple[float, int | None]]] = field(default_factory=dict)

    def client(
        self, gate: Callable[[], None], before_write: Callable[[], None] | None
    ) -> SimPsaClient:
        return SimPsaClient(self, gate, before_write)


@dataclass
class SimPsaClient:
    psa: SimPsa
    gate: Callable[[], None]
    before_write: Callable[[], None] | None

    def post_note(self, ticket_id: str, text: str, note_type: NoteType) -> PostedNote:
        return self._call(
            "POST", "post_note", ticket_id, lambda: self._post(ticket_id, text, note_type)
        )

    def find_note(self, ticket_id: str, marker: str) -> PostedNote | None:
        return self._call(
            "GET", "find_note", ticket_id, lambda: self.psa.data.find_note(ticket_id, marker)
        )

    def get_ticket(self, ticket_id: str) -> Ticket:
        ticket = self._call(
            "GET", "get_ticket", ticket_id, lambda: self.psa.data.get_ticket(ticket_id)
        )
        self.psa.reads.setdefault(ticket_id, []).append((self.psa.sim.now, ticket.status_id))
        self.psa.oracle.ticket_read(ticket_id, ticket.status_id)
        return ticket

    def update_ticket_status(self, ticket_id: str, status_id: int) -> None:
        self._call("PATCH", "update_status", ticket_id, lambda: self._patch(ticket_id, status_id))

    def list_boards(self) -> list[Board]:
        return self._call("GET", "list_boards", "", self.psa.data.list_boards)

    def list_statuses(self, board_id: int | None) -> list[BoardStatus]:
        return self._call("GET", "list_statuses", "", lambda: self.psa.data.list_statuses(board_id))

    def check_connection(self) -> None:
        self._call("GET", "check", "", self.psa.data.check_connection)

    # The PSA's side of a write

    def _post(self, ticket_id: str, text: str, note_type: NoteType) -> PostedNote:
        note = self.psa.data.post_note(ticket_id, text, note_type)
        self.psa.sim.trace(f"PSA {self.psa.name}: ticket {ticket_id} note {note.id} stored")
        return note

    def _patch(self, ticket_id: str, status_id: int) -> None:
        psa, faults = self.psa, self.psa.faults
        if faults.active(psa.sim.now) and psa.sim.rng.random() < faults.p_not_applied:
            psa.data.get_ticket(ticket_id)  # 404 and 400 still apply
            psa.data._status(psa.data.tickets[ticket_id].board_id or 1, status_id)
            psa.sim.trace(f"FAULT PSA {psa.name}: ticket {ticket_id} status change not applied")
            return
        psa.data.update_ticket_status(ticket_id, status_id)
        psa.sim.trace(f"PSA {psa.name}: ticket {ticket_id} status {status_id}")

    # What HTTP does around it

    def _call(self, method: str, name: str, ticket_id: str, effect: Callable[[], T]) -> T:
        """The request leaves right after the budget and the fence: from then on the PSA
        handles it on its own time (an actor of its own), whatever happens to this process;
        the client waits for the answer, gives up at its timeout, or gets a lost answer."""
        psa = self.psa
        sim, faults, rng, oracle = psa.sim, psa.faults, psa.sim.rng, psa.oracle
        sim.point(f"psa {psa.name} {name} {ticket_id}")
        self.gate()  # the budget: BudgetWait before anything is sent
        write = method not in READS
        if write and self.before_write is not None:
            self.before_write()  # the fence, right before the bytes leave
        oracle.psa_call(name, ticket_id, write)
        fault = _fault(rng, faults, write) if faults.active(sim.now) else None
        if fault == "429":
            sim.sleep(rng.uniform(0.01, 0.2))
            retry_after = round(rng.uniform(1, faults.max_retry_after))
            oracle.failure("transient")
            sim.trace(f"FAULT PSA {psa.name}: 429 Retry-After {retry_after}")
            raise PsaTransientError(f"{name}: 429 Too Many Requests", retry_after=retry_after)
        if fault == "refuse":
            sim.sleep(rng.uniform(0.01, 0.2))
            oracle.failure("permanent")
            sim.trace(f"FAULT PSA {psa.name}: {name} refused")
            raise PsaRejected(f"{name}: 400 refused by the PSA")
        # When the PSA acts on it, and when its answer is back: a slow one lands after the
        # client's timeout (and before the settle time the pipeline waits before it looks).
        lands = rng.uniform(0.02, 0.5)
        if fault == "slow":
            lands = rng.uniform(0.5 * psa.timeout, psa.settle)
            sim.trace(f"FAULT PSA {psa.name}: {name} takes {lands:.1f} s")
        applied = not (fault == "5xx" and (not write or rng.random() < 0.5))
        answer = _Answer()

        def handle() -> None:
            sim.sleep(lands)
            try:
                answer.value = effect() if applied else None
            except Exception as exc:  # the PSA's own refusal (404, 400): its answer
                answer.error = exc

        sim.spawn(f"{psa.name}-handles-{name}", handle)
        answered = lands + rng.uniform(0.02, 0.5)
        sim.sleep(min(answered, psa.timeout))
        if answered > psa.timeout or fault in ("5xx", "lost") or not applied:
            return self._failed(name, write)
        if answer.error is not None:
            raise answer.error
        return answer.value  # type: ignore[no-any-return]

    def _failed(self, name: str, write: bool) -> Any:
        self.psa.oracle.failure("ambiguous" if write else "transient")
        if write:
            raise PsaAmbiguousError(f"{name}: the answer was lost; the PSA may have applied it")
        raise PsaTransientError(f"{name}: 503 Service Unavailable")


@dataclass
class _Answer:
    value: Any = None
    error: Exception | None = None


def _fault(rng: Any, faults: PsaFaults, write: bool) -> str | None:
    for name, chance in (
        ("429", faults.p_429),
        ("5xx", faults.p_5xx),
        ("slow", faults.p_slow),
        ("refuse", faults.p_refuse),
        ("lost", faults.p_lost_answer if write else 0.0),
    ):
        if rng.random() < chance:
            return name
    return None
