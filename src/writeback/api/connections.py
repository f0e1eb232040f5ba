from __future__ import annotations

from flask import Blueprint

from writeback.api.context import authenticate_request, body, container, principal
from writeback.api.schemas import (
    ConnectionIn,
    StatusMapIn,
    board_out,
    board_status_out,
    connection_out,
    status_map_out,
)
from writeback.domain.errors import NotFound
from writeback.domain.model import JobKind

bp = Blueprint("psa_connections", __name__, url_prefix="/api/v1/psa-connections")
bp.before_request(authenticate_request)


@bp.post("")
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
    return connection_out(connection), 201


@bp.get("/<int:connection_id>")
def show(connection_id: int) -> dict[str, object]:
    return connection_out(container().connections.get(principal(), connection_id))


@bp.get("/<int:connection_id>/status-map")
def show_status_map(connection_id: int) -> dict[str, object]:
    return status_map_out(container().connections.status_map(principal(), connection_id))


@bp.put("/<int:connection_id>/status-map")
def put_status_map(connection_id: int) -> dict[str, object]:
    """Target statuses per board, by id or by name; replaces the connection's whole map."""
    data = body(StatusMapIn)
    entries = [(JobKind(m.kind), m.board_id, m.status) for m in data.mappings]
    return status_map_out(
        container().connections.put_status_map(principal(), connection_id, entries)
    )


@bp.get("/<int:connection_id>/boards")
def boards(connection_id: int) -> dict[str, object]:
    found = container().connections.boards(principal(), connection_id)
    return {"boards": [board_out(b) for b in found]}


@bp.get("/<int:connection_id>/boards/<board>/statuses")
def board_statuses(connection_id: int, board: str) -> dict[str, object]:
    """`board` is a board id, or `all` for PSAs whose statuses are not per board."""
    if board != "all" and not board.isdigit():
        raise NotFound(f"Board {board!r} not found.")
    board_id = None if board == "all" else int(board)
    found = container().connections.board_statuses(principal(), connection_id, board_id)
    return {"statuses": [board_status_out(s) for s in found]}


@bp.post("/<int:connection_id>/test")
def test_connection(connection_id: int) -> dict[str, object]:
    """Check the credentials against the PSA and say what failed: 200 either way."""
    check = container().connections.check(principal(), connection_id)
    return {"ok": check.ok, "failed": check.failed, "message": check.message}
