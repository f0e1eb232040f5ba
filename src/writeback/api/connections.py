from __future__ import annotations

from flask import Blueprint

from writeback.api.context import authenticate_request, body, container, principal
from writeback.api.openapi import documented
from writeback.api.responses import Boards, BoardStatuses, Connection, ConnectionCheck, StatusMap
from writeback.api.schemas import MAX_ID, ConnectionIn, StatusMapIn
from writeback.domain import services
from writeback.domain.errors import NotFound
from writeback.domain.model import JobKind, utcnow

bp = Blueprint("psa_connections", __name__, url_prefix="/api/v1/psa-connections")
bp.before_request(authenticate_request)
CONNECTION = f"/<int(min=1, max={MAX_ID}):connection_id>"
TAGS = ("psa-connections",)


@bp.post("")
@documented({201: Connection}, (502,), json=ConnectionIn, tags=TAGS)
def create() -> tuple[dict[str, object], int]:
    data, c = body(ConnectionIn), container()
    connection = services.create_connection(
        principal(),
        provider=data.provider,
        site_url=data.site_url,
        company_id=data.company_id,
        credentials=data.credentials,
        uow=c.uow,
        sealer=c.sealer,
        registry=c.registry,
        check_url=c.registry.configure_url,
        clock=utcnow,
    )
    return Connection.of(connection).body(), 201


@bp.get(CONNECTION)
@documented({200: Connection}, (404,), tags=TAGS)
def show(connection_id: int) -> dict[str, object]:
    found = services.get_connection(principal(), connection_id, uow=container().uow)
    return Connection.of(found).body()


@bp.get(f"{CONNECTION}/status-map")
@documented({200: StatusMap}, (404,), tags=TAGS)
def show_status_map(connection_id: int) -> dict[str, object]:
    found = services.get_status_map(principal(), connection_id, uow=container().uow)
    return StatusMap.of(list(found)).body()


@bp.put(f"{CONNECTION}/status-map")
@documented({200: StatusMap}, (404,), json=StatusMapIn, tags=TAGS)
def put_status_map(connection_id: int) -> dict[str, object]:
    """Target statuses per board, by id or by name; replaces the connection's whole map."""
    data = body(StatusMapIn)
    entries = [(JobKind(m.kind), m.board_id, m.status) for m in data.mappings]
    found = services.put_status_map(principal(), connection_id, entries, uow=container().uow)
    return StatusMap.of(list(found)).body()


@bp.get(f"{CONNECTION}/boards")
@documented({200: Boards}, (404, 502), tags=TAGS)
def boards(connection_id: int) -> dict[str, object]:
    c = container()
    found = services.list_boards(principal(), connection_id, uow=c.uow, registry=c.registry)
    return Boards.of(list(found)).body()


@bp.get(f"{CONNECTION}/boards/<board>/statuses")
@documented({200: BoardStatuses}, (404, 502), tags=TAGS)
def board_statuses(connection_id: int, board: str) -> dict[str, object]:
    """`board` is a board id, or `all` for PSAs whose statuses are not per board."""
    if board != "all" and not (board.isascii() and board.isdigit() and len(board) <= 10):
        raise NotFound(f"Board {board[:40]!r} not found.")
    c = container()
    found = services.list_board_statuses(
        principal(),
        connection_id,
        None if board == "all" else min(int(board), MAX_ID + 1),
        uow=c.uow,
        registry=c.registry,
    )
    return BoardStatuses.of(list(found)).body()


@bp.post(f"{CONNECTION}/test")
@documented({200: ConnectionCheck}, (404,), tags=TAGS)
def test_connection(connection_id: int) -> dict[str, object]:
    """Check the credentials against the PSA and say what failed: 200 either way."""
    c = container()
    check = services.check_connection(principal(), connection_id, uow=c.uow, registry=c.registry)
    return ConnectionCheck(ok=check.ok, failed=check.failed, message=check.message).body()
