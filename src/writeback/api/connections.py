from __future__ import annotations

from flask import Blueprint

from writeback.api.context import authenticate_request, body, container, principal
from writeback.api.openapi import documented
from writeback.api.responses import Boards, BoardStatuses, Connection, ConnectionCheck, StatusMap
from writeback.api.schemas import MAX_ID, ConnectionIn, StatusMapIn
from writeback.domain.errors import NotFound
from writeback.domain.model import JobKind

bp = Blueprint("psa_connections", __name__, url_prefix="/api/v1/psa-connections")
bp.before_request(authenticate_request)
CONNECTION = f"/<int(min=1, max={MAX_ID}):connection_id>"
TAGS = ("psa-connections",)


@bp.post("")
@documented({201: Connection}, (502,), json=ConnectionIn, tags=TAGS)
def create() -> tuple[dict[str, object], int]:
    data = body(ConnectionIn)
    connection = container().connections.create(
        principal(),
        provider=data.provider,
        site_url=data.site_url,
        company_id=data.company_id,
        credentials=data.credentials,
        options=data.options,
    )
    return Connection.of(connection).body(), 201


@bp.get(CONNECTION)
@documented({200: Connection}, (404,), tags=TAGS)
def show(connection_id: int) -> dict[str, object]:
    found = container().connections.get(principal(), connection_id)
    return Connection.of(found).body()


@bp.get(f"{CONNECTION}/status-map")
@documented({200: StatusMap}, (404,), tags=TAGS)
def show_status_map(connection_id: int) -> dict[str, object]:
    found = container().connections.status_map(principal(), connection_id)
    return StatusMap.of(list(found)).body()


@bp.put(f"{CONNECTION}/status-map")
@documented({200: StatusMap}, (404,), json=StatusMapIn, tags=TAGS)
def put_status_map(connection_id: int) -> dict[str, object]:
    """Target statuses per board, by id or by name; replaces the connection's whole map."""
    data = body(StatusMapIn)
    entries = [(JobKind(m.kind), m.board_id, m.status) for m in data.mappings]
    found = container().connections.put_status_map(principal(), connection_id, entries)
    return StatusMap.of(list(found)).body()


@bp.get(f"{CONNECTION}/boards")
@documented({200: Boards}, (404, 429, 502), tags=TAGS)
def boards(connection_id: int) -> dict[str, object]:
    found = container().connections.boards(principal(), connection_id)
    return Boards.of(list(found)).body()


@bp.get(f"{CONNECTION}/boards/<board>/statuses")
@documented({200: BoardStatuses}, (404, 429, 502), tags=TAGS)
def board_statuses(connection_id: int, board: str) -> dict[str, object]:
    """`board` is a board id, or `all` for PSAs whose statuses are not per board."""
    if board != "all" and not (board.isascii() and board.isdigit() and len(board) <= 10):
        raise NotFound(f"Board {board[:40]!r} not found.")
    board_id = None if board == "all" else min(int(board), MAX_ID + 1)
    found = container().connections.board_statuses(principal(), connection_id, board_id)
    return BoardStatuses.of(list(found)).body()


@bp.post(f"{CONNECTION}/test")
@documented({200: ConnectionCheck}, (404, 429), tags=TAGS)
def test_connection(connection_id: int) -> dict[str, object]:
    """Check the credentials against the PSA and say what failed: 200 either way."""
    check = container().connections.check(principal(), connection_id)
    return ConnectionCheck(ok=check.ok, failed=check.failed, message=check.message).body()
