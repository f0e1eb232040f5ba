"""Troubleshooting sessions: what a writeback drafts from, and which ticket it goes to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from writeback.domain.accounts import Principal
from writeback.domain.errors import InvalidInput, NotFound
from writeback.domain.model import AiSession, ticket_conflict
from writeback.domain.ports import Clock, UnitOfWork, UnitOfWorkFactory

TOGETHER = "psa_connection_id and psa_ticket_id are set together or not at all"


@dataclass(frozen=True)
class SessionService:
    uow: UnitOfWorkFactory
    reads: UnitOfWorkFactory  # reads that need no transaction
    clock: Clock

    def create(
        self,
        principal: Principal,
        *,
        session_type: str,
        intake_type: str,
        intake_content: dict[str, Any],
        conversation_messages: list[dict[str, Any]],
        psa_connection_id: int | None,
        psa_ticket_id: str | None,
    ) -> AiSession:
        if (psa_connection_id is None) != (psa_ticket_id is None):
            field = "psa_ticket_id" if psa_ticket_id is None else "psa_connection_id"
            raise InvalidInput(field, TOGETHER)
        now = self.clock()
        session = AiSession(
            account_id=principal.account_id,
            user_id=principal.user_id,
            session_type=session_type,
            intake_type=intake_type,
            intake_content=intake_content,
            conversation_messages=conversation_messages,
            psa_connection_id=psa_connection_id,
            psa_ticket_id=psa_ticket_id,
            created_at=now,
            updated_at=now,
        )
        with self.uow() as tx:
            if psa_connection_id is not None:
                _require_active_connection(tx, principal, psa_connection_id)
            tx.sessions.add(session)
            tx.commit()
        return session

    def get(self, principal: Principal, session_id: int) -> AiSession:
        with self.reads() as tx:
            return owned_session(tx, principal, session_id)

    def update(self, principal: Principal, session_id: int, changes: dict[str, Any]) -> AiSession:
        """Change what the session says (the chat goes on); every change is a new state_version,
        and a new state means new drafts. Its ticket stays while a job of it may write to
        that ticket: in flight, or after it may have posted (409 naming the job)."""
        with self.uow() as tx:
            session = owned_session(tx, principal, session_id, lock=True)
            # Checked before the entity changes: a query would autoflush a dangling foreign key.
            if any(
                name in changes and changes[name] != getattr(session, name)
                for name in ("psa_connection_id", "psa_ticket_id")
            ):
                holder = tx.jobs.ticket_holder(session_id)
                if holder is not None:
                    raise ticket_conflict(holder)
            if changes.get("psa_connection_id") is not None:
                _require_active_connection(tx, principal, changes["psa_connection_id"])
            for name, value in changes.items():
                setattr(session, name, value)
            if (session.psa_connection_id is None) != (session.psa_ticket_id is None):
                raise InvalidInput("psa_ticket_id", TOGETHER)
            session.state_version += 1
            session.updated_at = self.clock()
            tx.commit()
            return session


def owned_session(
    tx: UnitOfWork, principal: Principal, session_id: int, *, lock: bool = False
) -> AiSession:
    """`lock`: held until the transaction ends (a post and an edit of the ticket take turns)."""
    session = tx.sessions.get(session_id, principal.account_id, lock=lock)
    if session is None:
        raise NotFound(f"Session {session_id} not found.")
    return session


def _require_active_connection(tx: UnitOfWork, principal: Principal, connection_id: int) -> None:
    connection = tx.connections.get(connection_id, principal.account_id)
    if connection is None or not connection.is_active:
        raise InvalidInput("psa_connection_id", "No active PSA connection with that id.")
