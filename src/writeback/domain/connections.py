"""PSA connections: credentials sealed at rest, target statuses per board, and what the PSA
offers to map."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from writeback.domain.accounts import Principal
from writeback.domain.errors import InvalidInput, NotFound, PsaError
from writeback.domain.model import Board, BoardStatus, JobKind, PsaConnection, StatusMapping
from writeback.domain.ports import (
    Clock,
    CredentialSealer,
    ProviderRegistry,
    PsaProvider,
    UnitOfWork,
    UnitOfWorkFactory,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionCheck:
    ok: bool
    failed: str | None = None  # site_url, codebase, zone, credentials, client_id, ...
    message: str = "The PSA answered with these credentials."


@dataclass(frozen=True)
class ConnectionService:
    uow: UnitOfWorkFactory
    sealer: CredentialSealer
    # A person waits on every PSA call made here: the registry's interactive view, whose calls
    # wait briefly for the PSA's budget; BudgetWait when they cannot (the API answers 429).
    registry: ProviderRegistry
    # The SSRF guard at configuration time: the normalized URL, or InvalidInput.
    check_url: Callable[[str], str]
    clock: Clock

    def create(
        self,
        principal: Principal,
        *,
        provider: str,
        site_url: str,
        company_id: str,
        credentials: dict[str, str],
        options: dict[str, Any] | None = None,
    ) -> PsaConnection:
        fields = self.registry.credential_fields(provider)
        if fields is None:
            raise InvalidInput("provider", f"Unknown PSA provider {provider!r}.")
        missing = [f for f in fields if not credentials.get(f)]
        if missing:
            raise InvalidInput(f"credentials.{missing[0]}", f"credentials.{missing[0]} is required")
        # The provider maps a pasted URL to its API's (ConnectWise cloud hosts), checks options.
        site_url, options = self.registry.configure(provider, site_url, options)
        connection = PsaConnection(
            account_id=principal.account_id,
            provider=provider,
            site_url=self.check_url(site_url),  # https, public addresses only
            company_id=company_id,
            credentials_encrypted=self.sealer.seal({f: credentials[f] for f in fields}),
            created_at=self.clock(),
            options=options,
        )
        with self.uow() as tx:
            tx.connections.add(connection)
            tx.commit()
        log.info("psa connection %s created (%s)", connection.id, provider)
        return connection

    def get(self, principal: Principal, connection_id: int) -> PsaConnection:
        with self.uow() as tx:
            return _connection(tx, principal, connection_id)

    def status_map(self, principal: Principal, connection_id: int) -> list[StatusMapping]:
        with self.uow() as tx:
            _connection(tx, principal, connection_id)
            return tx.connections.status_map(connection_id)

    def put_status_map(
        self,
        principal: Principal,
        connection_id: int,
        entries: Sequence[tuple[JobKind, int | None, int | str]],
    ) -> list[StatusMapping]:
        """Replace the connection's map: (kind, board id or None for any board, status id or
        name). Names are resolved against the ticket's board when a job runs."""
        seen: set[tuple[JobKind, int | None]] = set()
        for index, (kind, board_id, _) in enumerate(entries):
            if (kind, board_id) in seen:
                raise InvalidInput(
                    f"mappings.{index}", f"{kind} on board {board_id} is mapped twice"
                )
            seen.add((kind, board_id))
        with self.uow() as tx:
            _connection(tx, principal, connection_id)
            mappings = [
                StatusMapping(
                    connection_id=connection_id,
                    kind=kind,
                    board_id=board_id,
                    status_id=status if isinstance(status, int) else None,
                    status_name=status if isinstance(status, str) else None,
                )
                for kind, board_id, status in entries
            ]
            tx.connections.replace_status_map(connection_id, mappings)
            tx.commit()
            return mappings

    def boards(self, principal: Principal, connection_id: int) -> list[Board]:
        return self._provider(principal, connection_id).list_boards()

    def board_statuses(
        self, principal: Principal, connection_id: int, board_id: int | None
    ) -> list[BoardStatus]:
        return self._provider(principal, connection_id).list_statuses(board_id)

    def check(self, principal: Principal, connection_id: int) -> ConnectionCheck:
        """What is wrong with the connection, if anything. A busy PSA budget (BudgetWait) says
        nothing about the connection: it is raised, not reported as a failed check."""
        try:
            self._provider(principal, connection_id).check_connection()
        except PsaError as exc:
            return ConnectionCheck(ok=False, failed=exc.failed or "unknown", message=exc.message)
        except InvalidInput as exc:  # the site URL no longer passes the SSRF guard
            return ConnectionCheck(ok=False, failed=exc.field, message=exc.message)
        return ConnectionCheck(ok=True)

    def _provider(self, principal: Principal, connection_id: int) -> PsaProvider:
        with self.uow() as tx:
            return self.registry.build(_connection(tx, principal, connection_id))


def _connection(tx: UnitOfWork, principal: Principal, connection_id: int) -> PsaConnection:
    connection = tx.connections.get(connection_id, principal.account_id)
    if connection is None:
        raise NotFound(f"PSA connection {connection_id} not found.")
    return connection
