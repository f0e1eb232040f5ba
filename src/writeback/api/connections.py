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
from writeback.domain import services
from writeback.domain.errors import NotFound
from writeback.domain.model import JobKind, utcnow

bp = Blueprint("psa_connections", __name__, url_prefix="/api/v1/psa-connections")
bp.before_request(authenticate_request)


@bp.post("")
def create() -> tuple[dict[str, object], int]:
    data, c = body(ConnectionIn), container()
    # The provider maps the pasted URL to its API's (ConnectWise cloud hosts) and checks options.
    site_url, options = c.registry.configure(data.provider, data.site_url, data.options)
    connection = services.create_connection(
        principal(),
        provider=data.provider,
        site_url=site_url,
        company_id=data.company_id,
        credentials=data.credentials,
        options=options,
        uow=c.uow,
        sealer=c.sealer,
        registry=c.registry,
        check_url=c.registry.configure_url,
        clock=utcnow,
    )
    return connection_out(connection), 201


@bp.get("/<int:connection_id>")
def show(connection_id: int) -> dict[str, object]:
    return connection_out(services.get_connection(principal(), connection_id, uow=container().uow))


@bp.get("/<int:connection_id>/status-map")
def show_status_map(connection_id: int) -> dict[str, object]:
    return status_map_out(services.get_status_map(principal(), connection_id, uow=container().uow))


@bp.put("/<int:connection_id>/status-map")
def put_status_map(connection_id: int) -> dict[str, object]:
    """Target statuses per board, by id or by name; replaces the connection's whole map."""
    data = body(StatusMapIn)
    entries = [(JobKind(m.kind), m.board_id, m.status) for m in data.mappings]
    return status_map_out(
        services.put_status_map(principal(), connection_id, entries, uow=container().uow)
    )


@bp.get("/<int:connection_id>/boards")
def boards(connection_id: int) -> dict[str, object]:
    c = container()
    found = services.list_boards(principal(), connection_id, uow=c.uow, registry=c.registry)
    return {"boards": [board_out(b) for b in found]}


@bp.get("/<int:connection_id>/boards/<board>/statuses")
def board_statuses(connection_id: int, board: str) -> dict[str, object]:
    """`board` is a board id, or `all` for PSAs whose statuses are not per board."""
    if board != "all" and not board.isdigit():
        raise NotFound(f"Board {board!r} not found.")
    c = container()
    found = services.list_board_statuses(
        principal(),
        connection_id,
        None if board == "all" else int(board),
        uow=c.uow,
        registry=c.registry,
    )
    return {"statuses": [board_status_out(s) for s in found]}


@bp.post("/<int:connection_id>/test")
def test_connection(connection_id: int) -> dict[str, object]:
    """Check the credentials against the PSA and say what failed: 200 either way."""
    c = container()
    check = services.check_connection(principal(), connection_id, uow=c.uow, registry=c.registry)
    return {"ok": check.ok, "failed": check.failed, "message": check.message}
